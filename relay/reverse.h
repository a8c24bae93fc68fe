/*
 * The relay's reverse services: a listener for each [service NAME] with
 * listen, whose clients become streams that the relay opens toward the
 * gateway the service names, over that gateway's link; the gateway
 * connects them to its own backend for the service.
 */
#ifndef TLSPLEX_RELAY_REVERSE_H
#define TLSPLEX_RELAY_REVERSE_H

struct cfg;
struct event_base;
struct link;
struct rev;

/* The link that carries streams to the gateway whose node name is node:
 * the newest of its links that is up, or NULL when none is. */
typedef struct link *(*rev_pick_fn)(void *ud, const char *node);

/* An empty set of reverse listeners on base.  NULL when out of memory. */
struct rev *rev_new(struct event_base *base, rev_pick_fn pick, void *ud);
/* Closes every listener and frees the set.  NULL is a no-op. */
void rev_free(struct rev *r);

/* Opens the listeners of configuration next, taking over those whose
 * address is unchanged.  Returns 0, or -1 (logged) with nothing staged.
 * next must stay valid until rev_commit() or rev_abandon(). */
int rev_stage(struct rev *r, const struct cfg *next);
/* Drops what rev_stage() prepared; the running listeners stay. */
void rev_abandon(struct rev *r);
/* Runs what rev_stage() prepared and closes listeners it no longer uses;
 * the configuration staged is the running one from now on. */
void rev_commit(struct rev *r);
/* SIGTERM: closes every listener (new clients are refused by the
 * kernel); streams already open carry on. */
void rev_close(struct rev *r);

#endif
