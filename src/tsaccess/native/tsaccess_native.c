/*
 * tsaccess_native: tsaccess's per-statement trigger functions in C (optional).
 *
 * PL/pgSQL costs a statement that sends one row about a tenth of its time just to call a
 * trigger function, and a per-statement audit row written into the audit hypertable costs
 * TimescaleDB a chunk lookup per statement. These two functions do the same work as
 * tsaccess's PL/pgSQL ones for a fraction of that:
 *
 * tsaccess_native_gate()   the chunk ACL gate: returns at once unless this backend inserted a
 *                          row into TimescaleDB's chunk catalog in this transaction (the same
 *                          test as the PL/pgSQL gate's first one); else it calls
 *                          <its schema>.tsaccess_chunk_gate_slow(), the PL/pgSQL gate's rest.
 * tsaccess_native_audit()  the statement and per-row audit: counts the transition table, reads
 *                          the session's context and takes the audit row's id (from the audit
 *                          table's identity sequence) when the statement runs, keeps the
 *                          record (per row: with copies of the changed rows) in backend
 *                          memory, and writes the transaction's records just before it
 *                          commits (or is prepared): one call of
 *                          <audit table's schema>.tsaccess_audit_flush(...) for the audit
 *                          rows, one per table of its rows flush function for the changed
 *                          rows, each as the function's owner. A rolled-back subtransaction
 *                          drops its records; a failed write makes the commit fail. Past
 *                          FLUSH_AT records a top-level transaction writes them early, and a
 *                          per-row statement of WRITE_NOW_ROWS rows or more is written at once
 *                          by the table's PL/pgSQL function (memory stays bounded).
 *
 * Nothing here is reachable from SQL but the two trigger functions, which refuse to run
 * other than as the triggers tsaccess creates.
 *
 * This file holds the two trigger functions; buffer.c keeps the transaction's records and
 * writes them at the commit, flush.c writes them (tsaccess_native.h: what they share).
 */

#include "postgres.h"

#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "tsaccess_native.h"

PG_MODULE_MAGIC;

/* the audit table's identity sequence, looked up again when the name means another table */
static char *audit_name = NULL;
static Oid	audit_relid = InvalidOid;
static Oid	audit_seq = InvalidOid;

static bool
word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '_' || (unsigned char) c >= 0x80;
}

static bool
regex_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * The PL/pgSQL function's test, without the regular expression: the client's query is one
 * statement (no ';' followed by more than white space) that starts, after white space and
 * comments, with MERGE or WITH. A MERGE or a data-modifying WITH fires the statement
 * triggers of every action it names, also of those that changed no row.
 */
static bool
lone_merge_or_with(void)
{
	const char *q = debug_query_string;
	const char *p;

	if (q == NULL)
		return false;
	for (p = q; *p; p++)
		if (*p == ';')
		{
			const char *s = p + 1;

			while (regex_space(*s))
				s++;
			if (*s)
				return false;
		}
	p = q;
	for (;;)
	{
		while (regex_space(*p))
			p++;
		if (p[0] == '/' && p[1] == '*')
		{
			const char *end = strstr(p + 2, "*/");

			if (end == NULL)
				return false;
			p = end + 2;
		}
		else if (p[0] == '-' && p[1] == '-')
		{
			const char *end = strchr(p, '\n');

			if (end == NULL)
				return false;
			p = end + 1;
		}
		else
			break;
	}
	if (pg_strncasecmp(p, "merge", 5) == 0 && !word_char(p[5]))
		return true;
	return pg_strncasecmp(p, "with", 4) == 0 && !word_char(p[4]);
}

static TriggerData *
after_trigger(FunctionCallInfo fcinfo, const char *name)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errmsg("%s() is a trigger function", name)));
	td = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR, (errmsg("%s() must fire AFTER the statement or row", name)));
	return td;
}

static Oid
relation_owner(Oid rel)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "tsaccess_native: cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* The audit table's identity sequence (the audit row's id is taken when the statement runs,
 * so rows written at commit keep the statements' order among every audit row). */
static Oid
audit_sequence(const char *qualified, Oid owner, Oid *relid)
{
	char	   *nspname;
	char	   *relname;
	Oid			nsp;
	Oid			rel = InvalidOid;

	/* looked up by name without a privilege check: the writer need not see the schema */
	DeconstructQualifiedName(stringToQualifiedNameList(qualified), &nspname, &relname);
	nsp = nspname ? get_namespace_oid(nspname, true) : InvalidOid;
	if (OidIsValid(nsp))
		rel = get_relname_relid(relname, nsp);

	if (!OidIsValid(rel))
		ereport(ERROR, (errmsg("tsaccess_native: the audit table %s does not exist", qualified),
						errhint("Run tsaccess apply to put the audit trail back.")));
	if (relation_owner(rel) != owner)
		ereport(ERROR, (errmsg("tsaccess_native: the audit table %s is not owned by the audit "
							   "trigger function's owner", qualified),
						errhint("Run tsaccess apply to put the audit trail back.")));
	if (rel != audit_relid || audit_name == NULL || strcmp(audit_name, qualified) != 0 ||
		get_rel_relkind(audit_seq) != RELKIND_SEQUENCE)
	{
		AttrNumber	att = get_attnum(rel, "id");
		Oid			seq = att != InvalidAttrNumber ? getIdentitySequence(rel, att, true) :
			InvalidOid;

		if (!OidIsValid(seq))
			ereport(ERROR, (errmsg("tsaccess_native: the audit table %s has no identity "
								   "column id", qualified),
							errhint("Run tsaccess apply to put the audit trail back.")));
		if (audit_name)
			pfree(audit_name);
		audit_name = MemoryContextStrdup(TopMemoryContext, qualified);
		audit_relid = rel;
		audit_seq = seq;
	}
	*relid = rel;
	return audit_seq;
}

static TupleDesc
copy_desc(TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TupleDesc	copy = CreateTupleDescCopy(desc);

	MemoryContextSwitchTo(old);
	return copy;
}

/* The rows of a transition table as composites of the table's row type, in cxt. */
static Datum *
copy_rows(Tuplestorestate *store, TupleDesc desc, int64 n, MemoryContext cxt)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	Datum	   *rows = MemoryContextAlloc(cxt, sizeof(Datum) * Max(n, 1));
	int			ptr = tuplestore_alloc_read_pointer(store, EXEC_FLAG_REWIND);
	MemoryContext old;
	int64		i = 0;

	tuplestore_select_read_pointer(store, ptr);
	tuplestore_rescan(store);
	old = MemoryContextSwitchTo(cxt);
	while (i < n && tuplestore_gettupleslot(store, true, false, slot))
		rows[i++] = ExecFetchSlotHeapTupleDatum(slot);
	MemoryContextSwitchTo(old);
	tuplestore_select_read_pointer(store, 0);
	ExecDropSingleTupleTableSlot(slot);
	if (i != n)
		elog(ERROR, "tsaccess_native: the transition table holds %lld rows, not %lld",
			 (long long) i, (long long) n);
	return rows;
}

/*
 * A per-row statement of WRITE_NOW_ROWS rows or more: the table's PL/pgSQL per-row function
 * (fn, qualified) writes it now, set-based from the transition tables, as it does without the
 * compiled function (its audit row's id is taken now too, so the order holds).
 */
static Datum
bulk_rows(FunctionCallInfo fcinfo, const char *fn, Oid owner)
{
	char	   *nspname;
	char	   *name;
	Oid			none[1] = {InvalidOid};
	Oid			func = tsn_function_by_name(fn, 0, none, &nspname, &name);
	FmgrInfo	flinfo;

	LOCAL_FCINFO(call, 0);
	if (!OidIsValid(func))
		ereport(ERROR, (errmsg("tsaccess_native: the per-row function %s is missing", fn),
						errhint("Run tsaccess apply to put the audit trail back.")));
	if (tsn_function_owner(func) != owner || get_func_rettype(func) != TRIGGEROID)
		ereport(ERROR, (errmsg("tsaccess_native: %s is not a trigger function of the audit "
							   "trigger function's owner", fn),
						errhint("Run tsaccess apply to put the audit trail back.")));
	fmgr_info(func, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, 0, InvalidOid, fcinfo->context, NULL);
	return FunctionCallInvoke(call);
}

PG_FUNCTION_INFO_V1(tsaccess_native_audit);

/*
 * Trigger arguments: the table's name as recorded; 'counted' (a statement trigger with a
 * transition table), 'plain' (TRUNCATE: no row count) or 'rows' (per-row mode: the changed
 * rows too); the audit table, qualified; in per-row mode the qualified names of the function
 * (bigint[], text[], <row type>[], <row type>[]) that writes the changed rows and of the
 * table's PL/pgSQL per-row trigger function (for statements of WRITE_NOW_ROWS rows or more).
 */
Datum
tsaccess_native_audit(PG_FUNCTION_ARGS)
{
	TriggerData *td = after_trigger(fcinfo, "tsaccess_native_audit");
	Trigger    *tg = td->tg_trigger;
	bool		rows_mode;
	AuditRecord rec;
	const AuditRecord *prev = tsn_last_record();
	Tuplestorestate *olds = NULL;
	Tuplestorestate *news = NULL;
	const char *role;
	char		buf[64];
	Oid			rec_owner;

	rows_mode = tg->tgnargs >= 2 && strcmp(tg->tgargs[1], "rows") == 0;
	if (tg->tgnargs != (rows_mode ? 5 : 3))
		ereport(ERROR, (errmsg("tsaccess_native_audit() takes 3 trigger arguments, 5 in per-row "
							   "mode"),
						errhint("Run tsaccess apply to make the audit triggers again.")));
	tsn_check_open();
	rec_owner = tsn_function_owner(fcinfo->flinfo->fn_oid);
	memset(&rec, 0, sizeof(rec));
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		rec.op = "INSERT";
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		rec.op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		rec.op = "DELETE";
	else
		rec.op = "TRUNCATE";
	rec.n = -1;
	if (!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR, (errmsg("tsaccess_native_audit() must fire FOR EACH STATEMENT")));
	if (strcmp(tg->tgargs[1], "plain") != 0)
	{
		bool		by_delete = TRIGGER_FIRED_BY_DELETE(td->tg_event);
		bool		by_update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);

		olds = (by_delete || (by_update && rows_mode)) ? td->tg_oldtable : NULL;
		news = by_delete ? NULL : td->tg_newtable;
		if ((by_delete || (by_update && rows_mode)) ? olds == NULL : news == NULL)
			ereport(ERROR, (errmsg("tsaccess_native_audit(): the trigger has no transition "
								   "table to count"),
							errhint("Run tsaccess apply to make the audit triggers again.")));
		rec.n = tuplestore_tuple_count(news ? news : olds);
		if (rec.n == 0 && lone_merge_or_with())
			return PointerGetDatum(NULL);
		if (rows_mode && rec.n >= WRITE_NOW_ROWS)
			return bulk_rows(fcinfo, tg->tgargs[4], rec_owner);
	}
	rec.owner = rec_owner;
	rec.id = nextval_internal(audit_sequence(tg->tgargs[2], rec_owner, &rec.audit), false);
	rec.level = GetCurrentTransactionNestLevel();
	rec.login = GetSessionUserId();
	if (rec.n < 0)
		snprintf(buf, sizeof(buf), "%s", rec.op);
	else
		snprintf(buf, sizeof(buf), "%s of " INT64_FORMAT " row(s)", rec.op, rec.n);
	rec.description = tsn_keep(buf, prev ? prev->description : NULL);
	rec.label = tsn_keep(tg->tgargs[0], prev ? prev->label : NULL);
	/* as current_setting('role') shows it: SET SESSION AUTHORIZATION ends a SET ROLE */
	role = OidIsValid(GetCurrentRoleId()) ? GetConfigOption("role", false, false) : NULL;
	rec.role = (role && strcmp(role, "none") != 0) ? tsn_keep(role, prev ? prev->role : NULL) : NULL;
	rec.app = tsn_keep(GetConfigOption("application_name", false, false), prev ? prev->app : NULL);
	rec.actor = tsn_keep(GetConfigOption("tsaccess.actor", true, false), prev ? prev->actor : NULL);
	rec.request = tsn_keep(GetConfigOption("tsaccess.request_id", true, false),
					   prev ? prev->request : NULL);
	if (rows_mode && rec.n > 0)
	{
		TupleDesc	desc = RelationGetDescr(td->tg_relation);

		rec.rows_flush = tsn_keep(tg->tgargs[3], prev ? prev->rows_flush : NULL);
		rec.rowtype = desc->tdtypeid;
		/* the row type as the rows are copied, shared while it stays the same */
		rec.desc = prev && prev->desc && prev->rowtype == rec.rowtype &&
			tsn_same_layout(prev->desc, desc) ? prev->desc
			: copy_desc(desc, tsn_buffer_context());
		rec.nrows = (int) rec.n;
		rec.olds = olds ? copy_rows(olds, desc, rec.n, tsn_buffer_context()) : NULL;
		rec.news = news ? copy_rows(news, desc, rec.n, tsn_buffer_context()) : NULL;
	}
	tsn_add_record(&rec);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(tsaccess_native_gate);

Datum
tsaccess_native_gate(PG_FUNCTION_ARGS)
{
	Oid			catalog_nsp;
	Oid			chunk_catalog = InvalidOid;
	char	   *nspname;
	StringInfoData q;

	{
		TriggerData *td = after_trigger(fcinfo, "tsaccess_native_gate");

		if (!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
			ereport(ERROR, (errmsg("tsaccess_native_gate() must fire FOR EACH STATEMENT")));
	}
	catalog_nsp = get_namespace_oid("_timescaledb_catalog", true);
	if (OidIsValid(catalog_nsp))
		chunk_catalog = get_relname_relid("chunk", catalog_nsp);
	if (OidIsValid(chunk_catalog) && pgstat_track_counts &&
		DatumGetInt64(DirectFunctionCall1(pg_stat_get_xact_tuples_inserted,
										  ObjectIdGetDatum(chunk_catalog))) == 0)
		return PointerGetDatum(NULL);	/* this backend made no chunk since the last flush */
	nspname = get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid));
	if (nspname == NULL)
		elog(ERROR, "tsaccess_native_gate(): its schema is gone");
	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s.%s()", quote_identifier(nspname), GATE_SLOW_FUNCTION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "tsaccess_native_gate(): SPI_connect failed");
	if (SPI_execute(q.data, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "tsaccess_native_gate(): %s failed", q.data);
	SPI_finish();
	return PointerGetDatum(NULL);
}
