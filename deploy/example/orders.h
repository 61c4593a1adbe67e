/*
 * The example service's store: orders and the outbox, in one MySQL/MariaDB
 * schema.  Every change to an order and the event that tells about it are
 * written in one transaction, which is the whole point of an outbox: tor
 * publishes the event if and only if the change committed.
 *
 * Each call opens its own connection and closes it, so the functions are
 * safe to call from any number of threads at once.  Errors are reported as
 * a result code plus a message in the caller's buffer.
 */
#ifndef EXAMPLE_ORDERS_H
#define EXAMPLE_ORDERS_H

#include <stddef.h>

struct orders_db {
	const char	*host;
	unsigned int	 port;
	const char	*user;
	const char	*password;
	const char	*database;
};

enum orders_result {
	ORDERS_OK,		/* done, and the event committed with it */
	ORDERS_EXISTS,		/* create: an order with this id exists */
	ORDERS_ABSENT,		/* delete: no order with this id */
	ORDERS_ERROR		/* the database failed; see the message */
};

/* The length of an order id: a UUID in its 8-4-4-4-12 text form. */
#define ORDERS_ID_LEN	36

/* Creates the tables orders and outbox when they do not exist yet. */
enum orders_result	orders_migrate(const struct orders_db *, char *, size_t);

/* Inserts the order and an OrderCreated event. */
enum orders_result	orders_create(const struct orders_db *, const char *,
			    char *, size_t);

/* Deletes the order and writes an OrderDeleted event. */
enum orders_result	orders_delete(const struct orders_db *, const char *,
			    char *, size_t);

#endif
