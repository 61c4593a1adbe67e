/*
 * Unit tests of src/outbox.c: routing, binding, row-to-message mapping and
 * the unrouted/oversized policies (DESIGN.md §4).
 *
 * The configuration and the table map are built by hand, so these tests
 * depend on nothing but the outbox module and the error buffer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tor/outbox.h"

#define CFG_PATH "/etc/tor/tor.cfg"

/* The table map: column order differs from the config, and names differ in
 * case, as they may coming from information_schema. */
enum { C_ID, C_UUID, C_TYPE, C_KEY, C_PAYLOAD, C_TRACE, NCOLS };

struct fixture {
	struct tor_config cfg;
	struct tor_outbox_table table;
	struct tor_header_map headers[2];
	struct tor_route routes[4];
	struct tor_column cols[NCOLS];
	struct tor_table_map tm;
	struct tor_value values[NCOLS];
	struct tor_row_origin origin;
	struct tor_outbox *ob;
};

static void
add_route(struct fixture *f, const char *match, const char *topic, bool icase)
{
	struct tor_route *r = &f->cfg.outbox.routes[f->cfg.outbox.n_routes++];

	r->match = (char *)match;
	r->topic = (char *)topic;
	r->icase = icase;
	assert_int_equal(regcomp(&r->re, match,
	    REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0)), 0);
}

static struct tor_value
val(const char *s)
{
	struct tor_value v = { .present = true, .is_null = false,
	    .data = (const uint8_t *)s, .len = strlen(s) };

	return v;
}

static const struct tor_value null_value = { .present = true, .is_null = true };

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	static const char *names[NCOLS] = { "id", "UUID", "Aggregate_Type",
	    "AGGREGATE_ID", "payload", "trace_id" };
	tor_err err;
	int i;

	assert_non_null(f);
	f->cfg.path = (char *)CFG_PATH;
	f->cfg.group = (char *)"orders";

	f->headers[0].column = (char *)"uuid";
	f->headers[0].header = (char *)"uuid";
	f->headers[1].column = (char *)"trace_id";
	f->headers[1].header = (char *)"traceparent";
	f->table.schema = (char *)"shop";
	f->table.table = (char *)"outbox";
	f->table.col_id = (char *)"uuid";
	f->table.col_key = (char *)"aggregate_id";
	f->table.col_type = (char *)"aggregate_type";
	f->table.col_payload = (char *)"payload";
	f->table.headers = f->headers;
	f->table.n_headers = 2;
	f->table.line = 12;
	f->cfg.outbox.tables = &f->table;
	f->cfg.outbox.n_tables = 1;

	f->cfg.outbox.routes = f->routes;
	add_route(f, "^order$", "orders", true);
	add_route(f, "^invoice", "invoices", false);
	add_route(f, "e", "has-e", false);
	f->cfg.outbox.topic_template = (char *)"outbox.event.${aggregate_type}";
	f->cfg.outbox.unrouted = TOR_UNROUTED_FAIL;
	f->cfg.outbox.dlq_topic = (char *)"outbox.dlq";

	for (i = 0; i < NCOLS; i++) {
		f->cols[i].type = TOR_TYPE_VARCHAR;
		f->cols[i].name = (char *)names[i];
	}
	f->cols[C_ID].type = TOR_TYPE_LONGLONG;
	snprintf(f->tm.schema, sizeof(f->tm.schema), "shop");
	snprintf(f->tm.table, sizeof(f->tm.table), "outbox");
	f->tm.table_id = 42;
	f->tm.ncols = NCOLS;
	f->tm.cols = f->cols;
	f->tm.has_names = true;

	f->values[C_ID] = val("7");
	f->values[C_UUID] = val("0b7e-11");
	f->values[C_TYPE] = val("order");
	f->values[C_KEY] = val("order-17");
	f->values[C_PAYLOAD] = val("{\"total\":12}");
	f->values[C_TRACE] = val("00-abc-01");

	f->origin.pos = "mysql-bin.000003:1234:0";
	f->origin.epoch = 9;
	f->origin.ts_ms = 1700000000123;

	f->ob = tor_outbox_new(&f->cfg, &err);
	assert_non_null(f->ob);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	size_t i;

	tor_outbox_free(f->ob);
	for (i = 0; i < f->cfg.outbox.n_routes; i++)
		regfree(&f->routes[i].re);
	free(f);
	return 0;
}

/* Binds the fixture's table map, which must succeed. */
static void
bind_ok(struct fixture *f)
{
	tor_err err = { "" };

	assert_int_equal(tor_outbox_bind(f->ob, 0, &f->tm, &err), 0);
}

static const struct tor_header *
header(const struct tor_message *msg, const char *name)
{
	size_t i;

	for (i = 0; i < msg->n_headers; i++)
		if (strcmp(msg->headers[i].name, name) == 0)
			return &msg->headers[i];
	return NULL;
}

static void
assert_header(const struct tor_message *msg, const char *name,
    const char *value)
{
	const struct tor_header *h = header(msg, name);

	assert_non_null(h);
	if (value == NULL) {
		assert_null(h->value);
		assert_int_equal(h->len, 0);
		return;
	}
	assert_non_null(h->value);
	assert_int_equal(h->len, strlen(value));
	assert_memory_equal(h->value, value, h->len);
}

static const char *
route(struct fixture *f, const char *type)
{
	return tor_outbox_route(f->ob, (const uint8_t *)type, strlen(type));
}

/* The configuration is read-only for a handle's life (routing answers are
 * cached): a test that changes it takes a new handle. */
static void
reopen(struct fixture *f)
{
	tor_outbox_free(f->ob);
	f->ob = tor_outbox_new(&f->cfg, NULL);
	assert_non_null(f->ob);
}

static void
test_find_table(void **state)
{
	struct fixture *f = *state;
	const char *buf = "shop.outbox_v2";

	assert_int_equal(tor_outbox_find_table(f->ob, "shop", 4, "outbox", 6), 0);
	/* Not NUL-terminated: names point into a binlog event. */
	assert_int_equal(tor_outbox_find_table(f->ob, buf, 4, buf + 5, 6), 0);
	assert_int_equal(tor_outbox_find_table(f->ob, buf, 4, buf + 5, 9), -1);
	assert_int_equal(tor_outbox_find_table(f->ob, "Shop", 4, "outbox", 6),
	    -1);
	assert_int_equal(tor_outbox_find_table(f->ob, "shop", 4, "OUTBOX", 6),
	    -1);
	assert_int_equal(tor_outbox_find_table(f->ob, "shop", 4, "outbo", 5),
	    -1);
	assert_int_equal(tor_outbox_find_table(f->ob, "sho", 3, "outbox", 6),
	    -1);
	assert_int_equal(tor_outbox_find_table(f->ob, "", 0, "", 0), -1);
}

static void
test_route_first_match_wins(void **state)
{
	struct fixture *f = *state;

	/* "order" matches routes 0 and 2, "invoice.paid" 1 and 2. */
	assert_string_equal(route(f, "order"), "orders");
	assert_string_equal(route(f, "invoice.paid"), "invoices");
	assert_string_equal(route(f, "orders"), "has-e");
}

/* Routing answers are cached per type: repeats, alternations and types
 * that share a prefix must each get their own answer. */
static void
test_route_cache_keeps_answers(void **state)
{
	struct fixture *f = *state;
	const uint8_t order_x[] = "orderX";

	assert_string_equal(route(f, "order"), "orders");
	assert_string_equal(route(f, "order"), "orders");
	assert_string_equal(route(f, "orders"), "has-e");
	assert_string_equal(route(f, "order"), "orders");
	/* The first 5 bytes of a longer buffer: the same type again. */
	assert_string_equal(tor_outbox_route(f->ob, order_x, 5), "orders");
	assert_string_equal(tor_outbox_route(f->ob, order_x, 6), "has-e");
	assert_string_equal(route(f, "cart"), "outbox.event.cart");
	assert_string_equal(route(f, "cat"), "outbox.event.cat");
	assert_string_equal(route(f, "cart"), "outbox.event.cart");
	assert_null(route(f, "a b"));
	assert_null(route(f, "a b"));
	assert_string_equal(route(f, ""), "outbox.event.");
}

static void
test_route_icase_and_anchors(void **state)
{
	struct fixture *f = *state;

	assert_string_equal(route(f, "ORDER"), "orders");
	assert_string_equal(route(f, "OrDeR"), "orders");
	/* Route 1 is case-sensitive: "Invoice" falls through to route 2. */
	assert_string_equal(route(f, "Invoice"), "has-e");
	/* ^ anchors: "xinvoice" is not an invoice. */
	assert_string_equal(route(f, "xinvoice"), "has-e");
	/* $ anchors: "order " does not match ^order$, nor route 1, but 'e'. */
	assert_string_equal(route(f, "order "), "has-e");
}

static void
test_route_template(void **state)
{
	struct fixture *f = *state;

	assert_string_equal(route(f, "cart"), "outbox.event.cart");
	assert_string_equal(route(f, "Cart_2-x"), "outbox.event.Cart_2-x");
	f->cfg.outbox.topic_template =
	    (char *)"${aggregate_type}.v1.${aggregate_type}";
	reopen(f);
	assert_string_equal(route(f, "cart"), "cart.v1.cart");
	f->cfg.outbox.topic_template = (char *)"fixed";
	reopen(f);
	assert_string_equal(route(f, "cart"), "fixed");
}

static void
test_route_template_invalid(void **state)
{
	struct fixture *f = *state;
	char longtype[300];

	/* Characters Kafka does not allow in a topic name. */
	assert_null(route(f, "a b"));
	assert_null(route(f, "a/b"));
	assert_null(route(f, "caf\xc3\xa4"));
	/* Too long: 13 + 237 = 250 > 249, while 13 + 236 = 249 is fine. */
	memset(longtype, 'a', sizeof(longtype));
	longtype[237] = '\0';
	assert_null(route(f, longtype));
	longtype[236] = '\0';
	assert_non_null(route(f, longtype));
	assert_int_equal(strlen(route(f, longtype)), 249);
	/* An empty type gives "outbox.event.", legal if odd. */
	assert_string_equal(route(f, ""), "outbox.event.");
	f->cfg.outbox.topic_template = (char *)"${aggregate_type}";
	reopen(f);
	assert_null(route(f, ""));
}

static void
test_route_none(void **state)
{
	struct fixture *f = *state;

	f->cfg.outbox.topic_template = (char *)"";
	reopen(f);
	assert_null(route(f, "cart"));
	f->cfg.outbox.topic_template = NULL;
	reopen(f);
	assert_null(route(f, "cart"));
	assert_string_equal(route(f, "order"), "orders");
}

static void
test_route_nul_byte(void **state)
{
	struct fixture *f = *state;

	/* Cut at the NUL, "order" would match route 0. */
	assert_null(tor_outbox_route(f->ob, (const uint8_t *)"order\0x", 7));
	assert_null(tor_outbox_route(f->ob, (const uint8_t *)"\0", 1));
}

static void
test_route_not_nul_terminated(void **state)
{
	struct fixture *f = *state;
	const char *buf = "orderbook";

	/* The first 5 bytes are "order": ^order$ must see only them. */
	assert_string_equal(tor_outbox_route(f->ob, (const uint8_t *)buf, 5),
	    "orders");
}

static void
test_map_row(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_string_equal(msg.topic, "orders");
	assert_int_equal(msg.key_len, 8);
	assert_memory_equal(msg.key, "order-17", 8);
	assert_int_equal(msg.value_len, 12);
	assert_memory_equal(msg.value, "{\"total\":12}", 12);

	/* Configured headers first, in order, then the tor.* ones. */
	assert_int_equal(msg.n_headers, 8);
	assert_string_equal(msg.headers[0].name, "uuid");
	assert_string_equal(msg.headers[1].name, "traceparent");
	assert_string_equal(msg.headers[2].name, "tor.id");
	assert_string_equal(msg.headers[3].name, "tor.type");
	assert_string_equal(msg.headers[4].name, "tor.group");
	assert_string_equal(msg.headers[5].name, "tor.pos");
	assert_string_equal(msg.headers[6].name, "tor.epoch");
	assert_string_equal(msg.headers[7].name, "tor.ts");
	assert_header(&msg, "tor.group", "orders");
	assert_header(&msg, "uuid", "0b7e-11");
	assert_header(&msg, "traceparent", "00-abc-01");
	assert_header(&msg, "tor.id", "0b7e-11");
	assert_header(&msg, "tor.type", "order");
	assert_header(&msg, "tor.pos", "mysql-bin.000003:1234:0");
	assert_header(&msg, "tor.epoch", "9");
	assert_header(&msg, "tor.ts", "1700000000123");
}

static void
test_map_large_numbers(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	f->origin.epoch = UINT64_MAX;
	f->origin.ts_ms = 0;
	f->origin.pos = "0-1-42:3";
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_header(&msg, "tor.epoch", "18446744073709551615");
	assert_header(&msg, "tor.ts", "0");
	assert_header(&msg, "tor.pos", "0-1-42:3");
}

static void
test_map_tombstone_and_nulls(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	f->values[C_PAYLOAD] = null_value;
	f->values[C_KEY] = null_value;
	f->values[C_TRACE] = null_value;
	f->values[C_UUID] = null_value;
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_null(msg.value);
	assert_int_equal(msg.value_len, 0);
	assert_null(msg.key);
	assert_int_equal(msg.key_len, 0);
	assert_int_equal(msg.n_headers, 8);
	assert_header(&msg, "uuid", NULL);
	assert_header(&msg, "traceparent", NULL);
	assert_header(&msg, "tor.id", NULL);
	assert_header(&msg, "tor.type", "order");
}

static void
test_map_empty_is_not_null(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	f->values[C_PAYLOAD] = val("");
	f->values[C_PAYLOAD].data = NULL;
	f->values[C_KEY] = val("");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_non_null(msg.value);
	assert_int_equal(msg.value_len, 0);
	assert_non_null(msg.key);
	assert_int_equal(msg.key_len, 0);
}

static void
test_map_without_id_column(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	f->table.col_id = NULL;
	f->table.n_headers = 0;
	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_int_equal(msg.n_headers, 5);
	assert_null(header(&msg, "tor.id"));
	assert_header(&msg, "tor.type", "order");
}

static void
test_bind_missing_column(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	f->cols[C_TRACE].name = (char *)"trace";
	assert_int_equal(tor_outbox_bind(f->ob, 0, &f->tm, &err), -1);
	assert_string_equal(err.msg, "shop.outbox.trace_id: no such column "
	    "(outbox table at /etc/tor/tor.cfg:12)");

	f->cols[C_TRACE].name = (char *)"trace_id";
	f->cols[C_PAYLOAD].name = NULL;
	assert_int_equal(tor_outbox_bind(f->ob, 0, &f->tm, &err), -1);
	assert_string_equal(err.msg, "shop.outbox.payload: no such column "
	    "(outbox table at /etc/tor/tor.cfg:12)");

	/* A failed bind leaves the table unbound: its rows are refused. */
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "shop.outbox: row before a table map was "
	    "bound (row mysql-bin.000003:1234:0)");

	f->cols[C_PAYLOAD].name = (char *)"PayLoad";
	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);

	assert_int_equal(tor_outbox_bind(f->ob, 1, &f->tm, &err), -1);
}

static void
test_bind_follows_new_map(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };
	char *tmp;

	bind_ok(f);
	/* An ALTER swapped the key and payload columns' places. */
	tmp = f->cols[C_KEY].name;
	f->cols[C_KEY].name = f->cols[C_PAYLOAD].name;
	f->cols[C_PAYLOAD].name = tmp;
	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_memory_equal(msg.key, "{\"total\":12}", 12);
	assert_memory_equal(msg.value, "order-17", 8);
}

static void
test_too_many_headers(void **state)
{
	struct fixture *f = *state;
	struct tor_header_map many[TOR_MAX_HEADERS];
	struct tor_outbox *ob;
	tor_err err = { "" };
	size_t i;

	for (i = 0; i < TOR_MAX_HEADERS; i++) {
		many[i].column = (char *)"uuid";
		many[i].header = (char *)"h";
	}
	f->table.headers = many;
	f->table.n_headers = TOR_MAX_HEADERS - 7;
	ob = tor_outbox_new(&f->cfg, &err);
	assert_non_null(ob);
	tor_outbox_free(ob);
	f->table.n_headers = TOR_MAX_HEADERS - 6;
	assert_null(tor_outbox_new(&f->cfg, &err));
	assert_string_equal(err.msg, "shop.outbox: 26 header mappings, at most "
	    "25 (outbox table at /etc/tor/tor.cfg:12)");
	f->table.headers = f->headers;
	f->table.n_headers = 2;
}

static void
test_unrouted_fail(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	f->cfg.outbox.topic_template = (char *)"";
	f->values[C_TYPE] = val("cart");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "no route for aggregate type 'cart' "
	    "(row mysql-bin.000003:1234:0)");

	f->values[C_TYPE] = val("wi\x01rd'\\\xff");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "no route for aggregate type "
	    "'wi\\x01rd\\'\\\\\\xff' (row mysql-bin.000003:1234:0)");

	f->values[C_TYPE].data = (const uint8_t *)"order\0";
	f->values[C_TYPE].len = 6;
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "no route for aggregate type "
	    "'order\\x00' (row mysql-bin.000003:1234:0)");

	f->values[C_TYPE] = null_value;
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "no route for aggregate type NULL "
	    "(row mysql-bin.000003:1234:0)");
}

static void
test_unrouted_skip(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	f->cfg.outbox.topic_template = (char *)"";
	f->cfg.outbox.unrouted = TOR_UNROUTED_SKIP;
	f->values[C_TYPE] = val("cart");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_SKIPPED);
	/* A routed row is not affected by the policy. */
	f->values[C_TYPE] = val("order");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_string_equal(msg.topic, "orders");
}

static void
test_unrouted_dlq(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	f->cfg.outbox.topic_template = (char *)"${aggregate_type}";
	f->cfg.outbox.unrouted = TOR_UNROUTED_DLQ;
	f->values[C_TYPE] = val("no/slash");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_string_equal(msg.topic, "outbox.dlq");
	/* The whole message goes to the dead-letter topic. */
	assert_memory_equal(msg.key, "order-17", 8);
	assert_memory_equal(msg.value, "{\"total\":12}", 12);
	assert_int_equal(msg.n_headers, 8);
	assert_header(&msg, "tor.type", "no/slash");
}

static void
test_oversized(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg, orig;
	tor_err err = { "" };

	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	orig = msg;

	/* Size: key 8 + value 12 + headers: uuid 4+7, traceparent 11+9,
	 * tor.id 6+7, tor.type 8+5, tor.group 9+6, tor.pos 7+23, tor.epoch
	 * 9+1, tor.ts 6+13 = 151. */
	f->cfg.outbox.unrouted = TOR_UNROUTED_FAIL;
	assert_int_equal(tor_outbox_oversized(f->ob, &msg, &f->origin, &err), -1);
	assert_string_equal(err.msg, "message too large (151 bytes) for topic "
	    "'orders' (row mysql-bin.000003:1234:0)");

	f->cfg.outbox.unrouted = TOR_UNROUTED_SKIP;
	assert_int_equal(tor_outbox_oversized(f->ob, &msg, &f->origin, &err),
	    TOR_OUTBOX_SKIPPED);

	f->cfg.outbox.unrouted = TOR_UNROUTED_DLQ;
	assert_int_equal(tor_outbox_oversized(f->ob, &msg, &f->origin, &err),
	    TOR_OUTBOX_MAPPED);
	assert_string_equal(msg.topic, "outbox.dlq");
	assert_null(msg.value);
	assert_int_equal(msg.value_len, 0);
	assert_int_equal(msg.key_len, 8);
	assert_memory_equal(msg.key, "order-17", 8);
	assert_int_equal(msg.n_headers, orig.n_headers + 1);
	assert_header(&msg, "tor.type", "order");
	assert_header(&msg, "tor.pos", "mysql-bin.000003:1234:0");
	assert_header(&msg, "tor.error", "message too large (151 bytes)");

	/* Still too large without its value: nothing left to drop. */
	assert_int_equal(tor_outbox_oversized(f->ob, &msg, &f->origin, &err), -1);
	assert_string_equal(err.msg, "message too large (177 bytes) even "
	    "without its value for dead-letter topic 'outbox.dlq' (row "
	    "mysql-bin.000003:1234:0)");
}

static void
test_partial_image(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	bind_ok(f);
	f->values[C_PAYLOAD].present = false;
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "shop.outbox.payload: not in the row "
	    "image; binlog_row_image must be FULL");

	f->values[C_PAYLOAD].present = true;
	f->values[C_TRACE].present = false;
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "shop.outbox.trace_id: not in the row "
	    "image; binlog_row_image must be FULL");

	/* A column the config does not name may be missing. */
	f->values[C_TRACE].present = true;
	f->values[C_ID].present = false;
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* columns.timestamp: the row's own time sets tor.ts and the Kafka
 * timestamp (a DATETIME/TIMESTAMP as rendered, taken as UTC; an integer
 * column as ms); NULL, a zero date or anything else leaves the commit's. */
static void
test_map_timestamp_column(void **state)
{
	static const struct {
		const char *value;      /* NULL: SQL NULL */
		int64_t ms;
	} cases[] = {
		{ "2026-12-01 10:00:00.5", 1796119200500 },
		{ "2026-12-01 10:00:00.123456", 1796119200123 },
		{ "1970-01-01 00:00:00", 0 },
		{ "2000-02-29 23:59:59", 951868799000 },
		{ "1700000000999", 1700000000999 },
		{ "-5", -5 },
		{ NULL, 1700000000123 },
		{ "0000-00-00 00:00:00", 1700000000123 },
		{ "2026-13-01 00:00:00", 1700000000123 },
		{ "soon", 1700000000123 },
		{ "12345678901234567890", 1700000000123 },
	};
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };
	char want[32];

	f->table.col_timestamp = (char *)"trace_id";
	f->table.n_headers = 1;
	bind_ok(f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f->values[C_TRACE] = cases[i].value != NULL ?
		    val(cases[i].value) : null_value;
		assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin,
		    &msg, &err), TOR_OUTBOX_MAPPED);
		snprintf(want, sizeof(want), "%lld", (long long)cases[i].ms);
		assert_header(&msg, "tor.ts", want);
		assert_int_equal(msg.timestamp_ms, cases[i].ms);
	}
	/* An XA row restamped at its commit keeps its own time. */
	f->values[C_TRACE] = val("2026-12-01 10:00:00.5");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	f->origin.ts_ms = 1800000000000;
	tor_outbox_restamp(f->ob, &msg, &f->origin);
	assert_header(&msg, "tor.ts", "1796119200500");
	/* Without the column: the commit time. */
	f->table.col_timestamp = NULL;
	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_header(&msg, "tor.ts", "1800000000000");
	assert_int_equal(msg.timestamp_ms, 1800000000000);
}

/* outbox.route = all: every distinct topic of the matching routes, the
 * first match first; the template's and the dead-letter topic alone; a
 * held copy of a message fans out as the message does. */
static void
test_route_all_fans_out(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg, *copy;
	const char *const *topics;
	tor_err err = { "" };

	add_route(f, "^ord", "orders", false);  /* a second way to "orders" */
	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	/* route = first (the default): one topic. */
	assert_int_equal(tor_outbox_topics(f->ob, &msg, &topics), 1);
	assert_string_equal(topics[0], "orders");

	f->cfg.outbox.route = TOR_ROUTE_ALL;
	reopen(f);
	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_string_equal(msg.topic, "orders");
	assert_int_equal(tor_outbox_topics(f->ob, &msg, &topics), 2);
	assert_string_equal(topics[0], "orders");
	assert_string_equal(topics[1], "has-e");
	copy = tor_outbox_message_copy(&msg);
	assert_non_null(copy);

	f->values[C_TYPE] = val("orders");      /* routes 2 and 3 */
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_string_equal(msg.topic, "has-e");
	assert_int_equal(tor_outbox_topics(f->ob, &msg, &topics), 2);
	assert_string_equal(topics[0], "has-e");
	assert_string_equal(topics[1], "orders");

	/* The copy made before still goes where its own type routes. */
	assert_int_equal(tor_outbox_topics(f->ob, copy, &topics), 2);
	assert_string_equal(topics[0], "orders");
	assert_string_equal(topics[1], "has-e");
	free(copy);

	f->values[C_TYPE] = val("xyz");         /* no route: the template */
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_int_equal(tor_outbox_topics(f->ob, &msg, &topics), 1);
	assert_string_equal(topics[0], "outbox.event.xyz");

	f->cfg.outbox.topic_template = (char *)"";
	f->cfg.outbox.unrouted = TOR_UNROUTED_DLQ;
	reopen(f);
	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_int_equal(tor_outbox_topics(f->ob, &msg, &topics), 1);
	assert_string_equal(topics[0], "outbox.dlq");
}

/* columns.partition: an integer column only; its value as given, NULL
 * said so, values past int64 kept out of range on their side. */
static void
test_map_partition_column(void **state)
{
	static const struct {
		const char *value;      /* NULL: SQL NULL */
		bool null;
		int64_t partition;
	} cases[] = {
		{ "3", false, 3 },
		{ "0", false, 0 },
		{ "-2", false, -2 },
		{ "18446744073709551615", false, INT64_MAX },
		{ "-99999999999999999999", false, -1 },
		{ NULL, true, 0 },
	};
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };

	f->table.col_partition = (char *)"trace_id";
	f->table.n_headers = 1;
	assert_int_equal(tor_outbox_bind(f->ob, 0, &f->tm, &err), -1);
	assert_string_equal(err.msg, "shop.outbox.trace_id: columns.partition "
	    "must be an integer column (outbox table at " CFG_PATH ":12)");
	f->cols[C_TRACE].type = TOR_TYPE_LONG;
	bind_ok(f);
	assert_true(tor_outbox_uses_column(f->ob, 0, C_TRACE));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f->values[C_TRACE] = cases[i].value != NULL ?
		    val(cases[i].value) : null_value;
		assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin,
		    &msg, &err), TOR_OUTBOX_MAPPED);
		assert_true(msg.partition_given);
		assert_int_equal(msg.partition_null, cases[i].null);
		if (!cases[i].null)
			assert_int_equal(msg.partition, cases[i].partition);
	}
	f->values[C_TRACE].present = false;
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), -1);
	assert_string_equal(err.msg, "shop.outbox.trace_id: not in the row "
	    "image; binlog_row_image must be FULL");
	f->table.col_partition = NULL;
	bind_ok(f);
	f->values[C_TRACE] = val("1");
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_false(msg.partition_given);
}

/* A message that cannot go where it was routed: outbox.unrouted's three
 * answers, the reason in the error or the tor.error header. */
static void
test_unroutable(void **state)
{
	struct fixture *f = *state;
	struct tor_message msg;
	tor_err err = { "" };
	const char *why = "partition 9 is out of range: topic orders has 3";

	bind_ok(f);
	assert_int_equal(tor_outbox_map(f->ob, 0, f->values, &f->origin, &msg,
	    &err), TOR_OUTBOX_MAPPED);
	assert_int_equal(tor_outbox_unroutable(f->ob, &msg, why, &f->origin,
	    &err), -1);
	assert_string_equal(err.msg, "partition 9 is out of range: topic "
	    "orders has 3 (row mysql-bin.000003:1234:0)");
	f->cfg.outbox.unrouted = TOR_UNROUTED_SKIP;
	assert_int_equal(tor_outbox_unroutable(f->ob, &msg, why, &f->origin,
	    &err), TOR_OUTBOX_SKIPPED);
	f->cfg.outbox.unrouted = TOR_UNROUTED_DLQ;
	msg.partition_given = true;
	msg.partition = 9;
	assert_int_equal(tor_outbox_unroutable(f->ob, &msg, why, &f->origin,
	    &err), TOR_OUTBOX_MAPPED);
	assert_string_equal(msg.topic, "outbox.dlq");
	assert_false(msg.partition_given);
	assert_header(&msg, "tor.error", why);
	assert_header(&msg, "tor.pos", "mysql-bin.000003:1234:0");
	assert_non_null(msg.value);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_find_table),
		T(test_route_first_match_wins),
		T(test_route_icase_and_anchors),
		T(test_route_cache_keeps_answers),
		T(test_route_template),
		T(test_route_template_invalid),
		T(test_route_none),
		T(test_route_nul_byte),
		T(test_route_not_nul_terminated),
		T(test_map_row),
		T(test_map_timestamp_column),
		T(test_map_large_numbers),
		T(test_map_tombstone_and_nulls),
		T(test_map_empty_is_not_null),
		T(test_map_without_id_column),
		T(test_bind_missing_column),
		T(test_bind_follows_new_map),
		T(test_too_many_headers),
		T(test_unrouted_fail),
		T(test_unrouted_skip),
		T(test_unrouted_dlq),
		T(test_oversized),
		T(test_partial_image),
		T(test_route_all_fans_out),
		T(test_map_partition_column),
		T(test_unroutable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
