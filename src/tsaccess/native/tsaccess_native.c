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

PG_MODULE_MAGIC;

#define FLUSH_FUNCTION "tsaccess_audit_flush"
#define GATE_SLOW_FUNCTION "tsaccess_chunk_gate_slow"
#define FLUSH_AT 10000			/* records kept before they are written early (at their
								 * own subtransaction level) */
#define FLUSH_ROWS 100000		/* changed rows kept before the same */
#define WRITE_NOW_ROWS 1000		/* per row: a statement of this many rows is written at once,
								 * by the table's PL/pgSQL function */
#define ROWS_PER_CALL 10000		/* changed rows per call of a rows flush function */
#define FLUSH_NARGS 10
#define ROWS_NARGS 4

void		_PG_init(void);

typedef struct AuditRecord
{
	int64		id;				/* the audit row's id, taken when the statement ran */
	Oid			audit;			/* the audit table */
	Oid			owner;			/* the trigger function's owner: every function it calls and
								 * the audit table must be this role's */
	int			level;			/* subtransaction nesting level the statement's effects live at */
	int64		n;				/* rows; -1: not counted (TRUNCATE) */
	Oid			login;			/* session_user */
	const char *op;
	const char *description;
	const char *label;			/* the audited table's name, as the trigger was given it */
	const char *role;			/* NULL: none (session_user) */
	const char *app;			/* NULL: empty */
	const char *actor;
	const char *request;
	/* per-row mode: the changed rows (composites of the audited table's row type) */
	const char *rows_flush;		/* its qualified name; NULL: statement mode */
	Oid			rowtype;
	TupleDesc	desc;			/* the row type as the rows were copied (shared) */
	int			nrows;
	Datum	   *olds;
	Datum	   *news;
} AuditRecord;

static MemoryContext buffer = NULL;	/* the records, their strings and rows; a child of
									 * TopTransactionContext, reset when they are written */
static AuditRecord *records = NULL;
static int	nrecords = 0;
static int	capacity = 0;
static int64 buffered_rows = 0;
static bool flushing = false;
static bool closed = false;		/* this transaction's records were written at its commit */

typedef struct FlushPlan
{
	Oid			nsp;			/* the audit flush function's schema */
	Oid			rowtype;		/* InvalidOid: the audit flush; else a rows flush of this type */
	char	   *name;			/* a rows flush function's qualified name */
	Oid			func;
	SPIPlanPtr	plan;
} FlushPlan;

#define MAX_PLANS 32
static FlushPlan plans[MAX_PLANS];
static int	nplans = 0;

/* the audit table's identity sequence, looked up again when the name means another table */
static char *audit_name = NULL;
static Oid	audit_relid = InvalidOid;
static Oid	audit_seq = InvalidOid;

static void
forget_records(void)
{
	buffer = NULL;				/* TopTransactionContext's child: gone with it */
	records = NULL;
	nrecords = 0;
	capacity = 0;
	buffered_rows = 0;
	closed = false;
}

static MemoryContext
buffer_context(void)
{
	if (buffer == NULL)
		buffer = AllocSetContextCreate(TopTransactionContext, "tsaccess_native records",
									   ALLOCSET_DEFAULT_SIZES);
	return buffer;
}

/* A string kept for the transaction: the previous record's when equal (the common case). */
static const char *
keep(const char *value, const char *previous)
{
	if (value == NULL || value[0] == '\0')
		return NULL;
	if (previous != NULL && strcmp(value, previous) == 0)
		return previous;
	return MemoryContextStrdup(buffer_context(), value);
}

static Datum
text_array(const AuditRecord *recs, int n, size_t offset)
{
	Datum	   *values = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		const char *s = *(const char *const *) ((const char *) &recs[i] + offset);

		nulls[i] = (s == NULL);
		values[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	}
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, TEXTOID, -1, false,
											  TYPALIGN_INT));
}

static Datum
int8_array(const int64 *values, const bool *nulls, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_md_array(d, (bool *) nulls, 1, dims, lbs, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static int
restricted_context(void)
{
	Oid			user;
	int			sec;

	GetUserIdAndSecContext(&user, &sec);
	return sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION;
}

static Oid
function_owner(Oid func)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(func));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "tsaccess_native: cache lookup failed for function %u", func);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * A function by qualified name and argument types, looked up without a privilege check: the
 * names come from triggers tsaccess made, and the writer may lack USAGE on the schema (the
 * function's owner, who runs it, has it).
 */
static Oid
function_by_name(const char *qualified, int nargs, Oid *types, char **nspname, char **name)
{
	List	   *names = stringToQualifiedNameList(qualified);
	Oid			nsp;

	DeconstructQualifiedName(names, nspname, name);
	if (*nspname == NULL)
		elog(ERROR, "tsaccess_native: %s is not a qualified name", qualified);
	nsp = get_namespace_oid(*nspname, true);
	if (!OidIsValid(nsp))
		return InvalidOid;
	return GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(*name),
						   PointerGetDatum(buildoidvector(types, nargs)),
						   ObjectIdGetDatum(nsp));
}

/* The saved plan calling a flush function: nsp's audit flush (rows_flush NULL), or the rows
 * flush function named rows_flush for composites of rowtype. */
static FlushPlan *
flush_plan(Oid nsp, const char *rows_flush, Oid rowtype)
{
	Oid			audit_types[FLUSH_NARGS] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, INT8ARRAYOID, OIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID};
	Oid			rows_types[ROWS_NARGS] = {INT8ARRAYOID, TEXTARRAYOID, InvalidOid, InvalidOid};
	int			nargs = rows_flush ? ROWS_NARGS : FLUSH_NARGS;
	Oid		   *types = rows_flush ? rows_types : audit_types;
	char	   *nspname;
	char	   *name;
	Oid			func;
	StringInfoData q;
	SPIPlanPtr	plan;

	if (rows_flush)
	{
		Oid			arr = get_array_type(rowtype);

		if (!OidIsValid(arr))
			elog(ERROR, "tsaccess_native: type %u has no array type", rowtype);
		rows_types[2] = rows_types[3] = arr;
		/* looked up each time: the function may have been dropped and made again */
		func = function_by_name(rows_flush, nargs, types, &nspname, &name);
		nsp = InvalidOid;
	}
	else
	{
		nspname = get_namespace_name(nsp);
		if (nspname == NULL)
			ereport(ERROR, (errmsg("tsaccess_native: the audit table's schema is gone"),
							errhint("Run tsaccess apply to put the audit trail back.")));
		name = FLUSH_FUNCTION;
		func = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(name),
							   PointerGetDatum(buildoidvector(types, nargs)),
							   ObjectIdGetDatum(nsp));
		rowtype = InvalidOid;
	}
	if (!OidIsValid(func))
		ereport(ERROR,
				(errmsg("tsaccess_native: the audit flush function %s.%s is missing; the audit "
						"records of this transaction cannot be written", nspname, name),
				 errhint("Run tsaccess apply to put the audit trail back.")));
	for (int i = 0; i < nplans; i++)
		if (plans[i].nsp == nsp && plans[i].rowtype == rowtype &&
			(rows_flush == NULL) == (plans[i].name == NULL) &&
			(rows_flush == NULL || strcmp(rows_flush, plans[i].name) == 0))
		{
			if (plans[i].func == func)
				return &plans[i];
			SPI_freeplan(plans[i].plan);
			if (plans[i].name)
				pfree(plans[i].name);
			plans[i] = plans[--nplans];
			break;
		}
	/* prepared as the owner (the caller, a writer, may lack USAGE on the schema) */
	SetUserIdAndSecContext(function_owner(func), restricted_context());
	initStringInfo(&q);
	appendStringInfo(&q, "SELECT %s.%s(", quote_identifier(nspname), quote_identifier(name));
	for (int i = 1; i <= nargs; i++)
		appendStringInfo(&q, i < nargs ? "$%d, " : "$%d)", i);
	plan = SPI_prepare(q.data, nargs, types);
	if (plan == NULL)
		elog(ERROR, "tsaccess_native: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	if (nplans == MAX_PLANS)
	{
		SPI_freeplan(plans[--nplans].plan);
		if (plans[nplans].name)
			pfree(plans[nplans].name);
	}
	plans[nplans].nsp = nsp;
	plans[nplans].rowtype = rowtype;
	plans[nplans].name = rows_flush ? MemoryContextStrdup(TopMemoryContext, rows_flush) : NULL;
	plans[nplans].func = func;
	plans[nplans].plan = plan;
	return &plans[nplans++];
}

/* Call a flush function with args, as its owner (a function nobody else may execute). */
static void
call_flush(Oid nsp, const char *rows_flush, Oid rowtype, Oid owner, Datum *args)
{
	Oid			save_user;
	int			save_sec;
	FlushPlan  *fp;
	int			rc;

	GetUserIdAndSecContext(&save_user, &save_sec);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "tsaccess_native: SPI_connect failed");
	PG_TRY();
	{
		fp = flush_plan(nsp, rows_flush, rowtype);
		if (function_owner(fp->func) != owner)
			ereport(ERROR,
					(errmsg("tsaccess_native: a flush function is not owned by the audit "
							"trigger function's owner; the audit records are not written"),
					 errhint("Run tsaccess apply to put the audit trail back.")));
		SetUserIdAndSecContext(owner, restricted_context());
		rc = SPI_execute_plan(fp->plan, args, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "tsaccess_native: the audit flush failed: %s",
				 SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	SPI_finish();
}

/* The audit rows of recs[0, n) (one audit table): one call of its schema's flush function. */
static void
write_audit_rows(const AuditRecord *recs, int n)
{
	Datum		args[FLUSH_NARGS];
	int64	   *ids = palloc(sizeof(int64) * n);
	int64	   *counts = palloc(sizeof(int64) * n);
	bool	   *count_nulls = palloc(sizeof(bool) * n);
	Datum	   *logins = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
	{
		ids[i] = recs[i].id;
		counts[i] = recs[i].n;
		count_nulls[i] = recs[i].n < 0;
		logins[i] = ObjectIdGetDatum(recs[i].login);
	}
	args[0] = int8_array(ids, NULL, n);
	args[1] = text_array(recs, n, offsetof(AuditRecord, op));
	args[2] = text_array(recs, n, offsetof(AuditRecord, label));
	args[3] = text_array(recs, n, offsetof(AuditRecord, description));
	args[4] = int8_array(counts, count_nulls, n);
	args[5] = PointerGetDatum(construct_array(logins, n, OIDOID, sizeof(Oid), true,
											  TYPALIGN_INT));
	args[6] = text_array(recs, n, offsetof(AuditRecord, role));
	args[7] = text_array(recs, n, offsetof(AuditRecord, app));
	args[8] = text_array(recs, n, offsetof(AuditRecord, actor));
	args[9] = text_array(recs, n, offsetof(AuditRecord, request));
	call_flush(get_rel_namespace(recs[0].audit), NULL, InvalidOid, recs[0].owner, args);
}

/* A batch of changed rows for one rows flush function. */
typedef struct RowBatch
{
	const char *flush;
	Oid			rowtype;
	Oid			owner;
	int			n;
	int64		ids[ROWS_PER_CALL];
	Datum		ops[ROWS_PER_CALL];
	Datum		olds[ROWS_PER_CALL];
	bool		old_nulls[ROWS_PER_CALL];
	Datum		news[ROWS_PER_CALL];
	bool		new_nulls[ROWS_PER_CALL];
} RowBatch;

static void
send_rows(RowBatch *b)
{
	Datum		args[ROWS_NARGS];
	int			dims[1] = {b->n};
	int			lbs[1] = {1};

	if (b->n == 0)
		return;
	args[0] = int8_array(b->ids, NULL, b->n);
	args[1] = PointerGetDatum(construct_array(b->ops, b->n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(b->olds, b->old_nulls, 1, dims, lbs, b->rowtype,
												 -1, false, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_md_array(b->news, b->new_nulls, 1, dims, lbs, b->rowtype,
												 -1, false, TYPALIGN_DOUBLE));
	call_flush(InvalidOid, b->flush, b->rowtype, b->owner, args);
	b->n = 0;
}

static void
add_row(RowBatch *b, const AuditRecord *r, Datum op, Datum old, bool has_old, Datum new,
		bool has_new)
{
	if (b->n > 0 && (strcmp(b->flush, r->rows_flush) != 0 || b->rowtype != r->rowtype ||
					 b->owner != r->owner))
		send_rows(b);
	b->flush = r->rows_flush;
	b->rowtype = r->rowtype;
	b->owner = r->owner;
	b->ids[b->n] = r->id;
	b->ops[b->n] = op;
	b->olds[b->n] = old;
	b->old_nulls[b->n] = !has_old;
	b->news[b->n] = new;
	b->new_nulls[b->n] = !has_new;
	if (++b->n == ROWS_PER_CALL)
		send_rows(b);
}

/* Whether two row types store their rows alike (attribute types, sizes, dropped columns). */
static bool
same_layout(TupleDesc a, TupleDesc b)
{
	if (a->natts != b->natts)
		return false;
	for (int i = 0; i < a->natts; i++)
	{
		Form_pg_attribute x = TupleDescAttr(a, i);
		Form_pg_attribute y = TupleDescAttr(b, i);

		if (x->atttypid != y->atttypid || x->atttypmod != y->atttypmod ||
			x->attisdropped != y->attisdropped || x->attlen != y->attlen ||
			x->attbyval != y->attbyval || x->attalign != y->attalign)
			return false;
	}
	return true;
}

/* The buffered rows of recs[0, n) in per-row mode. */
static void
write_changed_rows(const AuditRecord *recs, int n)
{
	RowBatch   *b = NULL;
	TupleDesc	checked = NULL;

	for (int i = 0; i < n; i++)
	{
		const AuditRecord *r = &recs[i];
		Datum		op;

		if (r->rows_flush == NULL || r->nrows == 0)
			continue;
		if (r->desc != checked)
		{
			/* the rows were copied with the row type of their statement: still the same? */
			TupleDesc	now = lookup_rowtype_tupdesc(r->rowtype, -1);
			bool		same = same_layout(now, r->desc);

			ReleaseTupleDesc(now);
			if (!same)
				ereport(ERROR,
						(errmsg("tsaccess_native: the columns of a table audited per row changed "
								"in this transaction after audited writes; their changed rows "
								"cannot be recorded"),
						 errhint("Commit the writes before altering the table.")));
			checked = r->desc;
		}
		if (b == NULL)
			b = palloc0(sizeof(RowBatch));
		op = CStringGetTextDatum(r->op);
		for (int k = 0; k < r->nrows; k++)
			add_row(b, r, op, r->olds ? r->olds[k] : (Datum) 0, r->olds != NULL,
					r->news ? r->news[k] : (Datum) 0, r->news != NULL);
	}
	if (b != NULL)
		send_rows(b);
}

static void
write_records(const AuditRecord *recs, int n)
{
	int			first = 0;
	bool		snapshot = false;
	MemoryContext scratch = AllocSetContextCreate(TopTransactionContext,
												  "tsaccess_native flush",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(scratch);

	if (!ActiveSnapshotSet())
	{
		/* before commit: no statement runs, so no snapshot is set */
		PushActiveSnapshot(GetTransactionSnapshot());
		snapshot = true;
	}
	for (int i = 1; i <= n; i++)
		if (i == n || recs[i].audit != recs[first].audit || recs[i].owner != recs[first].owner)
		{
			write_audit_rows(&recs[first], i - first);
			first = i;
		}
	write_changed_rows(recs, n);
	if (snapshot)
		PopActiveSnapshot();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(scratch);	/* on an error the transaction's end frees it */
}

static void
flush_records(void)
{
	int			level = GetCurrentTransactionNestLevel();
	int			first = nrecords;

	if (flushing)
		return;
	/* the records of the current level (a suffix: levels never decrease along the array) can
	 * be written in it, with the same fate as their statements; lower ones must wait */
	while (first > 0 && records[first - 1].level >= level)
		first--;
	if (first == nrecords)
		return;
	flushing = true;
	PG_TRY();
	{
		write_records(&records[first], nrecords - first);
	}
	PG_FINALLY();
	{
		flushing = false;
	}
	PG_END_TRY();
	for (int i = first; i < nrecords; i++)
	{
		AuditRecord *r = &records[i];

		buffered_rows -= r->nrows;
		for (int k = 0; k < r->nrows; k++)
		{
			if (r->olds)
				pfree(DatumGetPointer(r->olds[k]));
			if (r->news)
				pfree(DatumGetPointer(r->news[k]));
		}
		if (r->olds)
			pfree(r->olds);
		if (r->news)
			pfree(r->news);
	}
	nrecords = first;
	if (nrecords == 0 && buffer != NULL)
	{
		MemoryContextReset(buffer);	/* strings and row types too */
		records = NULL;
		capacity = 0;
		buffered_rows = 0;
	}
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			flush_records();
			closed = true;		/* a later audited write could not be recorded: refused */
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
		default:				/* COMMIT, ABORT, PREPARE and their parallel forms */
			forget_records();
			break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	/* the records' levels never decrease along the array: the ending level is a suffix */
	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = nrecords - 1; i >= 0 && records[i].level >= level; i--)
			records[i].level = level - 1;
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (nrecords > 0 && records[nrecords - 1].level >= level)
			nrecords--;
	}
}

void
_PG_init(void)
{
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
}

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

static AuditRecord *
new_record(void)
{
	if (nrecords == capacity)
	{
		int			grow = capacity ? capacity * 2 : 64;

		records = records == NULL
			? MemoryContextAlloc(buffer_context(), sizeof(AuditRecord) * grow)
			: repalloc(records, sizeof(AuditRecord) * grow);
		capacity = grow;
	}
	return &records[nrecords];
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
	Oid			func = function_by_name(fn, 0, none, &nspname, &name);
	FmgrInfo	flinfo;

	LOCAL_FCINFO(call, 0);
	if (!OidIsValid(func))
		ereport(ERROR, (errmsg("tsaccess_native: the per-row function %s is missing", fn),
						errhint("Run tsaccess apply to put the audit trail back.")));
	if (function_owner(func) != owner || get_func_rettype(func) != TRIGGEROID)
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
	const AuditRecord *prev = nrecords > 0 ? &records[nrecords - 1] : NULL;
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
	if (flushing)
		ereport(ERROR, (errmsg("tsaccess_native_audit(): an audited write while the audit "
							   "records were being written")));
	if (closed)
		ereport(ERROR, (errmsg("tsaccess_native_audit(): an audited write after this "
							   "transaction's audit records were written at its commit")));
	rec_owner = function_owner(fcinfo->flinfo->fn_oid);
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
	rec.description = keep(buf, prev ? prev->description : NULL);
	rec.label = keep(tg->tgargs[0], prev ? prev->label : NULL);
	/* as current_setting('role') shows it: SET SESSION AUTHORIZATION ends a SET ROLE */
	role = OidIsValid(GetCurrentRoleId()) ? GetConfigOption("role", false, false) : NULL;
	rec.role = (role && strcmp(role, "none") != 0) ? keep(role, prev ? prev->role : NULL) : NULL;
	rec.app = keep(GetConfigOption("application_name", false, false), prev ? prev->app : NULL);
	rec.actor = keep(GetConfigOption("tsaccess.actor", true, false), prev ? prev->actor : NULL);
	rec.request = keep(GetConfigOption("tsaccess.request_id", true, false),
					   prev ? prev->request : NULL);
	if (rows_mode && rec.n > 0)
	{
		TupleDesc	desc = RelationGetDescr(td->tg_relation);

		rec.rows_flush = keep(tg->tgargs[3], prev ? prev->rows_flush : NULL);
		rec.rowtype = desc->tdtypeid;
		/* the row type as the rows are copied, shared while it stays the same */
		rec.desc = prev && prev->desc && prev->rowtype == rec.rowtype &&
			same_layout(prev->desc, desc) ? prev->desc
			: copy_desc(desc, buffer_context());
		rec.nrows = (int) rec.n;
		rec.olds = olds ? copy_rows(olds, desc, rec.n, buffer_context()) : NULL;
		rec.news = news ? copy_rows(news, desc, rec.n, buffer_context()) : NULL;
		buffered_rows += rec.n;
	}
	*new_record() = rec;
	nrecords++;
	if (nrecords >= FLUSH_AT || buffered_rows >= FLUSH_ROWS)
		flush_records();		/* those of the current level: memory stays bounded */
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
