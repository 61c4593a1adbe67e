/*
 * The stream opened by GTID set (tor_binlog_open_gtid), against a fake
 * server on a local socket: no MySQL server runs here, so this pins what
 * can be pinned without one.  The fake speaks the client/server protocol
 * as documented (handshake v10 and an OK; a result set or an OK to each
 * query; to a dump, the binlog stream's packets: 0x00 + event, and 0xfe
 * at the end) and records what the client sends.  It shows the bytes of
 * COM_BINLOG_DUMP_GTID as MySQL's protocol documentation lays them out,
 * written here by hand, not by the encoder under test; that they go in
 * place of the library's COM_BINLOG_DUMP, after the library's own
 * binlog_checksum query; and that mariadb_rpl_fetch reads the stream
 * that follows.  The same fake answers the queries MySQL answers about
 * GTIDs, as its documentation shows their results: SHOW MASTER STATUS
 * with its fifth column, Executed_Gtid_Set, and gtid_executed with
 * gtid_purged, for the start of a new group and the resume check.  What a
 * real MySQL server answers to any of it is not shown.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <mysql.h>
#include <mariadb_rpl.h>

#include "tor/binlog.h"
#include "tor/config.h"

/* A query's result: one row of up to five columns ("" for NULL: none
 * here). */
struct answer {
	const char *prefix;             /* of the query it answers */
	int n;
	const char *names[5], *values[5];
};

struct fake {
	const struct answer *answers;
	size_t n_answers;
	int listen_fd, port;
	pthread_t thread;
	uint8_t command[4096];          /* the dump command's packet */
	size_t command_len;
	char queries[512];              /* the queries before it, "; " */
};

static int
read_full(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = read(fd, p, n);

		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* One packet, header included, into buf; its length or -1. */
static ssize_t
read_packet(int fd, uint8_t *buf, size_t cap)
{
	size_t len;

	if (read_full(fd, buf, 4) < 0)
		return -1;
	len = buf[0] | (size_t)buf[1] << 8 | (size_t)buf[2] << 16;
	if (4 + len > cap || read_full(fd, buf + 4, len) < 0)
		return -1;
	return (ssize_t)(4 + len);
}

static void
write_packet(int fd, uint8_t seq, const uint8_t *payload, size_t len)
{
	uint8_t h[4] = { (uint8_t)len, (uint8_t)(len >> 8),
	    (uint8_t)(len >> 16), seq };

	assert_int_equal(write(fd, h, 4), 4);
	assert_int_equal(write(fd, payload, len), (ssize_t)len);
}

/* A ROTATE event (artificial: log_pos 0) naming binlog.000007 at 4, as a
 * server starts a GTID dump with; no checksum (none was negotiated). */
static const uint8_t rotate_event[] = {
	0, 0, 0, 0,                     /* timestamp */
	4,                              /* ROTATE_EVENT */
	1, 0, 0, 0,                     /* server_id */
	40, 0, 0, 0,                    /* event size: 19 + 8 + 13 */
	0, 0, 0, 0,                     /* log_pos */
	0x20, 0,                        /* LOG_EVENT_ARTIFICIAL_F */
	4, 0, 0, 0, 0, 0, 0, 0,         /* position */
	'b', 'i', 'n', 'l', 'o', 'g', '.', '0', '0', '0', '0', '0', '7',
};

static uint8_t *
put_lenenc(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	*p++ = (uint8_t)n;              /* all shorter than 251 here */
	memcpy(p, s, n);
	return p + n;
}

/* A text result set of one row, as the protocol lays it out (column
 * count, definitions, EOF, the row, EOF), in packets from sequence 1. */
static void
write_result(int fd, const struct answer *a)
{
	static const uint8_t eof[] = { 0xfe, 0, 0, 2, 0 };
	uint8_t buf[1024], *p;
	uint8_t seq = 1, count = (uint8_t)a->n;

	write_packet(fd, seq++, &count, 1);
	for (int i = 0; i < a->n; i++) {
		p = put_lenenc(buf, "def");
		*p++ = 0;                       /* schema */
		*p++ = 0;                       /* table */
		*p++ = 0;                       /* org_table */
		p = put_lenenc(p, a->names[i]);
		*p++ = 0;                       /* org_name */
		*p++ = 0x0c;
		*p++ = 0x21;                    /* utf8 */
		*p++ = 0;
		memcpy(p, "\xff\0\0\0", 4);      /* column length */
		p += 4;
		*p++ = 0xfd;                    /* VAR_STRING */
		memset(p, 0, 5);                /* flags, decimals, filler */
		p += 5;
		write_packet(fd, seq++, buf, (size_t)(p - buf));
	}
	write_packet(fd, seq++, eof, sizeof(eof));
	p = buf;
	for (int i = 0; i < a->n; i++)
		p = put_lenenc(p, a->values[i]);
	write_packet(fd, seq++, buf, (size_t)(p - buf));
	write_packet(fd, seq, eof, sizeof(eof));
}

static const struct answer *
answer_of(const struct fake *f, const char *query, size_t len)
{
	for (size_t i = 0; i < f->n_answers; i++)
		if (strlen(f->answers[i].prefix) <= len &&
		    strncasecmp(query, f->answers[i].prefix,
		    strlen(f->answers[i].prefix)) == 0)
			return &f->answers[i];
	return NULL;
}

static void *
serve(void *arg)
{
	struct fake *f = arg;
	uint8_t hello[128], buf[4096], *p = hello;
	static const uint8_t ok[] = { 0, 0, 0, 2, 0, 0, 0 };
	static const uint8_t eof[] = { 0xfe, 0, 0, 2, 0 };
	uint8_t event[1 + sizeof(rotate_event)];
	/* PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH, TRANSACTIONS,
	 * LONG_PASSWORD, LONG_FLAG, CONNECT_WITH_DB, MULTI_RESULTS. */
	uint32_t caps = 0x000aa20d;
	ssize_t n;
	int fd;

next:
	if ((fd = accept(f->listen_fd, NULL, NULL)) < 0)
		return NULL;
	p = hello;
	*p++ = 10;
	memcpy(p, "8.0.36", 7);
	p += 7;
	memset(p, 0, 4);                        /* connection id */
	p += 4;
	memcpy(p, "abcdefgh", 8);               /* scramble, first part */
	p += 8;
	*p++ = 0;
	*p++ = (uint8_t)caps;
	*p++ = (uint8_t)(caps >> 8);
	*p++ = 0x21;                            /* utf8 */
	*p++ = 2;                               /* autocommit */
	*p++ = 0;
	*p++ = (uint8_t)(caps >> 16);
	*p++ = (uint8_t)(caps >> 24);
	*p++ = 21;
	memset(p, 0, 10);
	p += 10;
	memcpy(p, "ijklmnopqrst", 13);          /* second part and NUL */
	p += 13;
	memcpy(p, "mysql_native_password", 22);
	p += 22;
	write_packet(fd, 0, hello, (size_t)(p - hello));
	/* Any password will do. */
	if (read_packet(fd, buf, sizeof(buf)) < 0)
		goto out;
	write_packet(fd, 2, ok, sizeof(ok));
	/* Commands until a dump: a query gets its answer, else (a SELECT)
	 * one row "NONE" (binlog_checksum: no checksums), else an OK; a ping
	 * an OK; a quit ends the connection. */
	for (;;) {
		const struct answer *a;
		static const struct answer none = { "", 1, { "@@binlog_checksum" },
		    { "NONE" } };

		if ((n = read_packet(fd, f->command, sizeof(f->command))) < 5 ||
		    f->command[4] == 0x01)
			goto out;
		if (f->command[4] == 0x12 || f->command[4] == 0x1e)
			break;
		if (f->command[4] != 0x03) {
			write_packet(fd, 1, ok, sizeof(ok));
			continue;
		}
		snprintf(f->queries + strlen(f->queries), sizeof(f->queries) -
		    strlen(f->queries), "%s%.*s", f->queries[0] ? "; " : "",
		    (int)n - 5, (const char *)f->command + 5);
		a = answer_of(f, (const char *)f->command + 5, (size_t)n - 5);
		if (a == NULL && strncasecmp((const char *)f->command + 5,
		    "select", 6) == 0)
			a = &none;
		if (a != NULL)
			write_result(fd, a);
		else
			write_packet(fd, 1, ok, sizeof(ok));
	}
	f->command_len = (size_t)n;
	event[0] = 0;
	memcpy(event + 1, rotate_event, sizeof(rotate_event));
	write_packet(fd, 1, event, sizeof(event));
	write_packet(fd, 2, eof, sizeof(eof));
	/* Until the client closes. */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
out:
	close(fd);
	goto next;
}

static int
setup(void **state)
{
	static struct fake f;
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	memset(&f, 0, sizeof(f));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f.listen_fd >= 0);
	assert_int_equal(bind(f.listen_fd, (struct sockaddr *)&a, sizeof(a)),
	    0);
	assert_int_equal(listen(f.listen_fd, 1), 0);
	assert_int_equal(getsockname(f.listen_fd, (struct sockaddr *)&a, &len),
	    0);
	f.port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f.thread, NULL, serve, &f), 0);
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fake *f = *state;

	shutdown(f->listen_fd, SHUT_RDWR);
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	return 0;
}

#define SID_A "3e11fa47-71ca-11e1-9e33-c80aa9429562"

/* COM_BINLOG_DUMP_GTID for 3e11fa47-...:1-77:80, server_id 7, written out
 * field by field from the protocol's layout. */
static const uint8_t want[] = {
	/* header: payload length 1+2+4+4+0+8+4+64 = 87, sequence 0 */
	87, 0, 0, 0,
	0x1e,                                   /* COM_BINLOG_DUMP_GTID */
	0, 0,                                   /* flags: blocking */
	7, 0, 0, 0,                             /* server_id */
	0, 0, 0, 0,                             /* binlog name length: "" */
	4, 0, 0, 0, 0, 0, 0, 0,                 /* position 4 */
	64, 0, 0, 0,                            /* data size */
	1, 0, 0, 0, 0, 0, 0, 0,                 /* n_sids */
	0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1,
	0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62,
	2, 0, 0, 0, 0, 0, 0, 0,                 /* n_intervals */
	1, 0, 0, 0, 0, 0, 0, 0, 78, 0, 0, 0, 0, 0, 0, 0,  /* [1, 78) */
	80, 0, 0, 0, 0, 0, 0, 0, 81, 0, 0, 0, 0, 0, 0, 0, /* [80, 81) */
};

static void
test_dump_request_and_stream(void **state)
{
	struct fake *f = *state;
	MYSQL *m = mysql_init(NULL);
	MARIADB_RPL *rpl;
	MARIADB_RPL_EVENT *ev;
	tor_err err = { "" };

	assert_non_null(mysql_real_connect(m, "127.0.0.1", "tor", "x", NULL,
	    (unsigned)f->port, NULL, 0));
	rpl = mariadb_rpl_init(m);
	assert_non_null(rpl);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, "", (size_t)0);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, 4ul);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, 7u);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, 0);
	/* A set that does not parse is refused before anything is sent. */
	assert_int_equal(tor_binlog_open_gtid(rpl, SID_A ":0", 7, &err), -1);
	assert_non_null(strstr(err.msg, "bad GTID set"));
	/* MySQL's spelling, parts out of order: the same request. */
	assert_int_equal(tor_binlog_open_gtid(rpl, SID_A ":80,\n " SID_A
	    ":1-77", 7, &err), 0);
	print_message("queries before the dump: %s\n", f->queries);
	/* The library's own set-up ran: it reads the stream by its answer. */
	assert_non_null(strstr(f->queries, "select @@binlog_checksum"));
	ev = mariadb_rpl_fetch(rpl, NULL);
	if (ev == NULL)
		print_message("fetch: %s (%u); rpl: %s (%u)\n", mysql_error(m),
		    mysql_errno(m), mariadb_rpl_error(rpl),
		    mariadb_rpl_errno(rpl));
	assert_non_null(ev);
	assert_int_equal(f->command_len, sizeof(want));
	assert_memory_equal(f->command, want, sizeof(want));
	/* The stream reads as any other: the event with the protocol's OK
	 * byte before it, then the end. */
	assert_int_equal(ev->event_type, ROTATE_EVENT);
	assert_int_equal(ev->raw_data_size, 1 + sizeof(rotate_event));
	assert_memory_equal(ev->raw_data + 1, rotate_event,
	    sizeof(rotate_event));
	mariadb_free_rpl_event(ev);
	assert_null(mariadb_rpl_fetch(rpl, NULL));
	mariadb_rpl_close(rpl);
	mysql_close(m);
}

static struct tor_config
fake_cfg(const struct fake *f)
{
	struct tor_config cfg = { .group = (char *)"g" };

	cfg.mysql.host = (char *)"127.0.0.1";
	cfg.mysql.port = f->port;
	cfg.mysql.user = (char *)"tor";
	cfg.mysql.password = (char *)"x";
	cfg.mysql.server_public_key = (char *)"";
	cfg.mysql.connect_timeout_ms = 5000;
	cfg.mysql.tls.mode = TOR_TLS_DISABLED;
	return cfg;
}

#define SID_B "4c4d4e4f-0000-1111-2222-333344445555"

/* A new group on MySQL starts where SHOW MASTER STATUS says, with the
 * executed set of the same row (its fifth column, as MySQL prints it:
 * uppercase, a newline after the comma): file, position and set are one
 * point. */
static void
test_resolve_end_reads_the_executed_set(void **state)
{
	static const struct answer status[] = { { "SHOW MASTER STATUS", 5,
	    { "File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB",
	    "Executed_Gtid_Set" }, { "binlog.000007", "1234", "", "",
	    SID_B ":1-3,\n3E11FA47-71CA-11E1-9E33-C80AA9429562:1-77" } } };
	struct fake *f = *state;
	struct tor_config cfg = fake_cfg(f);
	struct tor_binlog *b = tor_binlog_new(&cfg);
	static char set[TOR_GTID_SET_TEXT];
	struct tor_position pos;
	tor_err err = { "" };

	f->answers = status;
	f->n_answers = 1;
	assert_int_equal(tor_binlog_resolve_start(b, "end", &pos, set, &err),
	    0);
	print_message("queries: %s\n", f->queries);
	assert_string_equal(pos.file, "binlog.000007");
	assert_int_equal(pos.pos, 1234);
	assert_string_equal(set, SID_A ":1-77," SID_B ":1-3");
	tor_binlog_free(b);
}

/* Another server resumes a MySQL checkpoint by its set only when its
 * gtid_executed holds all of it and its gtid_purged nothing the set lacks;
 * else the halt names the GTIDs.  The answers are MySQL's, as the
 * variables show them. */
static void
resume_on(struct fake *f, const char *executed, const char *purged,
    int want, const char *says)
{
	struct answer vars = { "SELECT @@global.gtid_executed", 2,
	    { "@@global.gtid_executed", "@@global.gtid_purged" },
	    { executed, purged } };
	struct tor_checkpoint cp = { .pos = { .file = "binlog.000003",
	    .pos = 900 }, .server_id = 1, .gtid_set = SID_A ":1-77" };
	struct tor_config cfg = fake_cfg(f);
	struct tor_binlog *b = tor_binlog_new(&cfg);
	tor_err err = { "" };

	f->answers = &vars;
	f->n_answers = 1;
	cp.pos.file[0] = '\0';
	assert_int_equal(tor_binlog_check_held(b, &cp, 2, &err), want);
	if (says != NULL) {
		print_message("%s\n", err.msg);
		assert_non_null(strstr(err.msg, says));
	}
	tor_binlog_free(b);
}

static void
test_resume_check_on_another_server(void **state)
{
	struct fake *f = *state;

	resume_on(f, SID_A ":1-100,\n" SID_B ":1-5", SID_A ":1-50", 0, NULL);
	resume_on(f, SID_A ":1-70", "", TOR_BINLOG_FATAL,
	    "the server lacks " SID_A ":71-77 of the checkpoint");
	resume_on(f, SID_A ":1-100", SID_A ":1-80", TOR_BINLOG_FATAL,
	    "the server has purged " SID_A ":78-80, which the checkpoint "
	    "lacks");
	resume_on(f, "", "", TOR_BINLOG_FATAL, "the server lacks " SID_A
	    ":1-77");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dump_request_and_stream,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_resolve_end_reads_the_executed_set, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_resume_check_on_another_server, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
