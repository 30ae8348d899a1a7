/*
 * tsaccess_native: writing the audit records (see tsaccess_native.c). One call of the audit
 * table's schema's tsaccess_audit_flush(...) per audit table and owner for the audit rows, one
 * per table (in batches of ROWS_PER_CALL) of its rows flush function for the changed rows;
 * every function is called through a saved plan, as its owner, with
 * SECURITY_RESTRICTED_OPERATION, and must belong to the trigger function's owner.
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

Oid
tsn_function_owner(Oid func)
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
Oid
tsn_function_by_name(const char *qualified, int nargs, Oid *types, char **nspname, char **name)
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
		func = tsn_function_by_name(rows_flush, nargs, types, &nspname, &name);
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
	SetUserIdAndSecContext(tsn_function_owner(func), restricted_context());
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
		if (tsn_function_owner(fp->func) != owner)
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
bool
tsn_same_layout(TupleDesc a, TupleDesc b)
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
			bool		same = tsn_same_layout(now, r->desc);

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

void
tsn_write_records(const AuditRecord *recs, int n)
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

