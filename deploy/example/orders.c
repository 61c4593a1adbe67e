/*
 * Orders and their events, written together.
 *
 * A change is two statements in one transaction: the change to the orders
 * table, then a row in the outbox table that tells about it (its
 * aggregate_type "order", aggregate_id the order's id, a JSON payload and a
 * fresh UUID() as the event id).  tor reads the outbox row from the binlog
 * once the transaction commits; a rolled back change leaves no event.
 *
 * Request data only ever travels as a bound parameter of a prepared
 * statement.  Each call uses a connection of its own: no state is shared
 * between threads, and a database restart costs one failed request.
 */
#include <stdio.h>
#include <string.h>

#include <mysql.h>
#include <mysqld_error.h>

#include "orders.h"

#define TIMEOUT_S	5

static const char *const schema[] = {
	"CREATE TABLE IF NOT EXISTS orders ("
	"  id CHAR(36) NOT NULL PRIMARY KEY,"
	"  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"
	") ENGINE=InnoDB",
	/* The columns tor.cfg's sample table names. */
	"CREATE TABLE IF NOT EXISTS outbox ("
	"  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
	"  uuid CHAR(36) NULL,"
	"  aggregate_id VARCHAR(64) NOT NULL,"
	"  aggregate_type VARCHAR(64) NOT NULL,"
	"  payload BLOB NULL"
	") ENGINE=InnoDB",
};

static const char insert_event_sql[] =
    "INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload) "
    "VALUES (UUID(), ?, 'order', ?)";

/* What one request changes, and the event that says so. */
struct change {
	const char	*sql;		/* one parameter: the order id */
	const char	*event;
	enum orders_result none;	/* when no row was affected */
};

static const struct change create_order = {
	"INSERT INTO orders (id) VALUES (?)", "OrderCreated", ORDERS_ERROR
};

static const struct change delete_order = {
	"DELETE FROM orders WHERE id = ?", "OrderDeleted", ORDERS_ABSENT
};

/* Opens a connection with timeouts, so a stuck server fails a request
 * rather than hanging it; NULL and a message on failure. */
static MYSQL *
db_connect(const struct orders_db *db, char *err, size_t errlen)
{
	unsigned int timeout = TIMEOUT_S;
	MYSQL *m;

	if ((m = mysql_init(NULL)) == NULL) {
		snprintf(err, errlen, "mysql_init: out of memory");
		return NULL;
	}
	mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
	mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
	if (mysql_real_connect(m, db->host, db->user, db->password,
	    db->database, db->port, NULL, 0) == NULL) {
		snprintf(err, errlen, "connect to %s:%u as %s: %s", db->host,
		    db->port, db->user, mysql_error(m));
		mysql_close(m);
		return NULL;
	}
	return m;
}

/*
 * Runs one prepared statement with string parameters.  Returns 0 and the
 * affected row count, or -1 with the server's error number (0 when the
 * failure was not the server's answer) and a message.
 */
static int
stmt_run(MYSQL *m, const char *sql, const char *const *params, int nparams,
    unsigned long long *affected, unsigned int *errnum, char *err,
    size_t errlen)
{
	MYSQL_BIND bind[2];
	unsigned long len[2];
	MYSQL_STMT *st;
	int rc = -1;

	*errnum = 0;
	if (nparams > 2) {
		snprintf(err, errlen, "stmt_run: %d parameters", nparams);
		return -1;
	}
	if ((st = mysql_stmt_init(m)) == NULL) {
		snprintf(err, errlen, "mysql_stmt_init: %s", mysql_error(m));
		return -1;
	}
	memset(bind, 0, sizeof(bind));
	for (int i = 0; i < nparams; i++) {
		len[i] = strlen(params[i]);
		bind[i].buffer_type = MYSQL_TYPE_STRING;
		bind[i].buffer = (void *)params[i];
		bind[i].buffer_length = len[i];
		bind[i].length = &len[i];
	}
	if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0 ||
	    mysql_stmt_bind_param(st, bind) != 0 ||
	    mysql_stmt_execute(st) != 0) {
		*errnum = mysql_stmt_errno(st);
		snprintf(err, errlen, "%s", mysql_stmt_error(st));
		goto done;
	}
	*affected = mysql_stmt_affected_rows(st);
	rc = 0;
done:
	mysql_stmt_close(st);
	return rc;
}

/* Applies a change to the order `id` and writes its event, in one
 * transaction: both commit, or neither. */
static enum orders_result
apply_change(const struct orders_db *db, const struct change *c,
    const char *id, char *err, size_t errlen)
{
	char payload[128];
	const char *event[2] = { id, payload };
	unsigned long long affected = 0;
	enum orders_result res = ORDERS_ERROR;
	unsigned int errnum;
	MYSQL *m;

	if ((m = db_connect(db, err, errlen)) == NULL)
		return ORDERS_ERROR;
	if (mysql_autocommit(m, 0) != 0) {
		snprintf(err, errlen, "autocommit off: %s", mysql_error(m));
		goto done;
	}
	if (stmt_run(m, c->sql, &id, 1, &affected, &errnum, err,
	    errlen) < 0) {
		if (errnum == ER_DUP_ENTRY)
			res = ORDERS_EXISTS;
		goto done;
	}
	if (affected == 0) {
		res = c->none;
		snprintf(err, errlen, "%s: no row changed", c->event);
		goto done;
	}
	snprintf(payload, sizeof(payload),
	    "{\"event\":\"%s\",\"order_id\":\"%s\"}", c->event, id);
	if (stmt_run(m, insert_event_sql, event, 2, &affected, &errnum, err,
	    errlen) < 0)
		goto done;
	if (mysql_commit(m) != 0) {
		snprintf(err, errlen, "commit: %s", mysql_error(m));
		goto done;
	}
	res = ORDERS_OK;
done:
	if (res != ORDERS_OK)
		mysql_rollback(m);
	mysql_close(m);
	return res;
}

enum orders_result
orders_migrate(const struct orders_db *db, char *err, size_t errlen)
{
	enum orders_result res = ORDERS_OK;
	MYSQL *m;

	if ((m = db_connect(db, err, errlen)) == NULL)
		return ORDERS_ERROR;
	for (size_t i = 0; i < sizeof(schema) / sizeof(schema[0]); i++) {
		if (mysql_query(m, schema[i]) != 0) {
			snprintf(err, errlen, "create table: %s",
			    mysql_error(m));
			res = ORDERS_ERROR;
			break;
		}
	}
	mysql_close(m);
	return res;
}

enum orders_result
orders_create(const struct orders_db *db, const char *id, char *err,
    size_t errlen)
{
	return apply_change(db, &create_order, id, err, errlen);
}

enum orders_result
orders_delete(const struct orders_db *db, const char *id, char *err,
    size_t errlen)
{
	return apply_change(db, &delete_order, id, err, errlen);
}
