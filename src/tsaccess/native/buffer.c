/*
 * tsaccess_native: the transaction's audit records (see tsaccess_native.c), kept in a child
 * context of TopTransactionContext until they are written: just before the commit (or
 * PREPARE), or early, in their own subtransaction, past FLUSH_AT records or FLUSH_ROWS changed
 * rows. A rolled-back subtransaction drops its records; a released one hands them to its
 * parent.
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

void		_PG_init(void);

static MemoryContext buffer = NULL;	/* the records, their strings and rows; a child of
									 * TopTransactionContext, reset when they are written */
static AuditRecord *records = NULL;
static int	nrecords = 0;
static int	capacity = 0;
static int64 buffered_rows = 0;
static bool flushing = false;
static bool closed = false;		/* this transaction's records were written at its commit */

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

MemoryContext
tsn_buffer_context(void)
{
	if (buffer == NULL)
		buffer = AllocSetContextCreate(TopTransactionContext, "tsaccess_native records",
									   ALLOCSET_DEFAULT_SIZES);
	return buffer;
}

/* A string kept for the transaction: the previous record's when equal (the common case). */
const char *
tsn_keep(const char *value, const char *previous)
{
	if (value == NULL || value[0] == '\0')
		return NULL;
	if (previous != NULL && strcmp(value, previous) == 0)
		return previous;
	return MemoryContextStrdup(tsn_buffer_context(), value);
}

static AuditRecord *
new_record(void)
{
	if (nrecords == capacity)
	{
		int			grow = capacity ? capacity * 2 : 64;

		records = records == NULL
			? MemoryContextAlloc(tsn_buffer_context(), sizeof(AuditRecord) * grow)
			: repalloc(records, sizeof(AuditRecord) * grow);
		capacity = grow;
	}
	return &records[nrecords];
}

void
tsn_flush_records(void)
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
		tsn_write_records(&records[first], nrecords - first);
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
			tsn_flush_records();
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


/* The transaction's last record (its strings are shared with the next when equal). */
const AuditRecord *
tsn_last_record(void)
{
	return nrecords > 0 ? &records[nrecords - 1] : NULL;
}

/* Refuse an audited write that could not be recorded. */
void
tsn_check_open(void)
{
	if (flushing)
		ereport(ERROR, (errmsg("tsaccess_native_audit(): an audited write while the audit "
							   "records were being written")));
	if (closed)
		ereport(ERROR, (errmsg("tsaccess_native_audit(): an audited write after this "
							   "transaction's audit records were written at its commit")));
}

/* Keep rec (its strings and rows already in the buffer's context) until it is written. */
void
tsn_add_record(const AuditRecord *rec)
{
	buffered_rows += rec->nrows;
	*new_record() = *rec;
	nrecords++;
	if (nrecords >= FLUSH_AT || buffered_rows >= FLUSH_ROWS)
		tsn_flush_records();	/* those of the current level: memory stays bounded */
}
