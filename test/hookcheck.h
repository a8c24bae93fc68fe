/*
 * A checker for the hook's JSON Lines files (docs/MONITORING.md): parses
 * the flat objects a daemon writes and asserts the schema's invariants
 * with Criterion.  Every function that asserts must run inside a test.
 */
#ifndef TLSPLEX_HOOKCHECK_H
#define TLSPLEX_HOOKCHECK_H

#include <stddef.h>
#include <stdint.h>

struct hk_kv {
	char *key, *val; /* val decoded; numbers and booleans as written */
	int str;         /* the value was a JSON string */
};

struct hk_ev {
	struct hk_kv *kv;
	size_t n;
	int line;        /* 1-based, within the file it came from */
	const char *file;
};

struct hk_log {
	struct hk_ev *ev;
	size_t n;
	char name[640];  /* the files, for messages */
	char *files[4];  /* their names, which events point to */
};

/* Reads and parses the files in order, as one stream (a rotated file
 * then its successor); asserts that every line is one flat JSON object
 * with no key twice.  A missing file counts as empty. */
struct hk_log *hk_load(const char *const *paths, size_t n);
/* hk_load() of one file. */
struct hk_log *hk_load1(const char *path);
/* NULL is a no-op. */
void hk_free(struct hk_log *log);

/* The value of key, or NULL when the event lacks it. */
const char *hk_get(const struct hk_ev *ev, const char *key);
/* The number under key; asserts that it is there and a number. */
uint64_t hk_num(const struct hk_ev *ev, const char *key);
/* Nonzero when the event's key holds exactly val (key NULL: any). */
int hk_is(const struct hk_ev *ev, const char *key, const char *val);
/* Events named event (NULL: any) with key = val (key NULL: any), in
 * order: the i-th, or NULL; and how many. */
const struct hk_ev *hk_nth(const struct hk_log *log, const char *event,
			   const char *key, const char *val, size_t i);
size_t hk_count(const struct hk_log *log, const char *event,
		const char *key, const char *val);
/* The events of one link (instance and link of ev), in order, the
 * i-th; NULL past the end. */
const struct hk_ev *hk_link_nth(const struct hk_log *log,
				const struct hk_ev *ev, size_t i);
/* The link_closed of the link ev belongs to, or NULL. */
const struct hk_ev *hk_link_closed(const struct hk_log *log,
				   const struct hk_ev *ev);

/* Nonzero when s is an RFC 3339 UTC time ("2026-12-01T20:33:52.123456Z",
 * fraction optional). */
int hk_rfc3339(const char *s);

/* hk_check flags. */
#define HK_KILLED 0x1 /* the last instance was killed (SIGKILL): it may
			 lack daemon_stopping and leave links unclosed */
#define HK_ROTATED 0x2 /* the stream was cut at its end (rotated away):
			  the last instance goes on elsewhere */
#define HK_RESUMED 0x4 /* the stream starts in the middle of an instance
			  (the file after a rotation) */

/*
 * Asserts for every line: schema v2 and the common keys; seq +1 per
 * line within an instance (from 1 at daemon_started); link events with
 * their addresses and tls_role; every link_opened closed exactly once by
 * link_closed, nothing about the link after it; every handshake_pending
 * answered exactly once by handshake_done or handshake_failed (with a
 * stage) before link_closed; one outcome and one protection per
 * link_closed, consistent with the events before it; one transcript per
 * link; durations below max_ms; each instance opened by daemon_started
 * and, unless killed, ended by daemon_stopping with only closing events
 * after it.  (instance, link) is unique across the whole stream.
 */
void hk_check(const struct hk_log *log, int64_t max_ms, int flags);

/* hk_check_pair flags. */
#define HK_UNMATCHED_OK 0x1 /* a MITM altered the negotiation: transcripts
			       need not be found on the other side */

/*
 * Joins the gateway's and the relay's events by transcript: each link
 * with a transcript on one side has one on the other, every event of
 * that link on either side carries the same one, and the two
 * link_closed agree on the outcome, except when the gateway refused the
 * relay's decision itself (DECISION_MISMATCH, POLICY_VIOLATION): then
 * the relay's outcome is failed or aborted.  A relay's transcript the
 * gateway lacks is allowed only for a link that carried no stream, and
 * only as many as the gateway has links that ended before a decision
 * arrived (it was stopped or cut off meanwhile).  Returns the number of
 * links joined.
 */
size_t hk_check_pair(const struct hk_log *gw, const struct hk_log *relay,
		     int flags);

/* Runs fn(arg) with the checks above reporting instead of failing the
 * test: returns NULL when every check passed, else the first failure's
 * message (valid until the next check).  For testing the checker
 * itself; what fn allocates before a failure is its own business. */
const char *hk_probe(void (*fn)(void *), void *arg);

#endif
