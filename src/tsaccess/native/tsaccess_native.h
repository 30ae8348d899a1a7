/*
 * tsaccess_native's parts (see tsaccess_native.c): the record of one audited statement, kept
 * until it is written, and what the three files call of each other.
 *
 *   tsaccess_native.c   the two trigger functions (the chunk gate and the audit)
 *   buffer.c            the transaction's records: kept, dropped with their subtransaction,
 *                       written early past FLUSH_AT, written at the commit
 *   flush.c             writing records: the owner-only flush functions, called as their owner
 */
#ifndef TSACCESS_NATIVE_H
#define TSACCESS_NATIVE_H

#include "access/tupdesc.h"

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

/* buffer.c */
extern MemoryContext tsn_buffer_context(void);
extern const char *tsn_keep(const char *value, const char *previous);
extern const AuditRecord *tsn_last_record(void);
extern void tsn_check_open(void);
extern void tsn_add_record(const AuditRecord *rec);
extern void tsn_flush_records(void);

/* flush.c */
extern void tsn_write_records(const AuditRecord *recs, int n);
extern Oid	tsn_function_owner(Oid func);
extern Oid	tsn_function_by_name(const char *qualified, int nargs, Oid *types, char **nspname,
								 char **name);
extern bool tsn_same_layout(TupleDesc a, TupleDesc b);

#endif							/* TSACCESS_NATIVE_H */
