/*
 * tlsplex-report: what tools/report.c computes from the event files and
 * tools/report_out.c prints (text, JSON, Markdown).
 */
#ifndef TLSPLEX_REPORT_H
#define TLSPLEX_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How a link ended, from link_closed.outcome (or the events before it). */
enum rpt_class {
	RC_TLS,
	RC_PLAINTEXT,
	RC_REFUSED,
	RC_FAILED,
	RC_ABORTED,
	RC_CONNECT_FAILED,
	RC_NONE, /* no outcome */
	RC_COUNT
};

/* The finding ids, in the order the report lists them. */
enum rpt_id {
	TPX_PLAINTEXT,
	TPX_TLS_VERSION,
	TPX_CIPHER,
	TPX_CERT_EXPIRED,
	TPX_CERT_EXPIRES,
	TPX_HS_FAILED,
	TPX_REFUSED,
	TPX_ABORTED,
	TPX_CONNECT_FAILED,
	TPX_UNCLASSIFIED,
	TPX_SIDES_DISAGREE,
	TPX_INPUT_GAP,
	TPX_COUNT
};

enum rpt_format { RF_TEXT, RF_JSON, RF_MARKDOWN };
enum rpt_group { RG_PEER, RG_SERVICE, RG_CIPHER, RG_NODE };

struct rpt_finding {
	enum rpt_id id;
	int fail;          /* listed in --fail-on */
	const char *group;
	const char *subject;
	uint64_t count;
	const char *example;
};

struct rpt_groupstat {
	const char *name;
	uint64_t links, cls[RC_COUNT], tcp_refused, exempt;
};

struct rpt_service {
	const char *service, *protection;
	uint64_t streams;
};

/* Everything the printers need. */
struct report {
	enum rpt_format format;
	enum rpt_group group_by;
	int64_t now_us;
	int now_given;
	int min_tls;        /* 10 = TLS 1.0, 12 = 1.2, ... */
	long cert_warn_days;
	/* input */
	size_t files, unreadable;
	uint64_t lines, events, malformed, truncated, duplicates, instances;
	/* links */
	uint64_t links, joined_transcript, joined_address, one_side;
	uint64_t cls[RC_COUNT];
	uint64_t tcp_refused, exempt;
	struct rpt_groupstat *groups;
	size_t ngroups;
	struct rpt_finding *findings;
	size_t nfindings;
	uint64_t id_count[TPX_COUNT];
	int id_fail[TPX_COUNT];
	struct rpt_service *services; /* NULL: no service_summary records */
	size_t nservices;
	int service_data;
	int exit_code;
};

/* The finding id's name ("TPX-PLAINTEXT"), and a line about it. */
const char *rpt_id_name(enum rpt_id id);
const char *rpt_id_help(enum rpt_id id);
/* The class's name as link_closed.outcome spells it ("none": no outcome). */
const char *rpt_class_name(enum rpt_class c);
/* Formats ts_us as RFC 3339 UTC to the second into buf. */
void rpt_time_str(int64_t ts_us, char *buf, size_t len);
/* Prints r in its format to out. */
void report_print(FILE *out, const struct report *r);

#endif
