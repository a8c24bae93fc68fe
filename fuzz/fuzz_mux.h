/*
 * Input layout shared by fuzz_mux.c and the corpus generator:
 *   byte 0        settings bits (FM_*)
 *   byte 1        link budget and scheduler bits (FF_*)
 *   byte 2        K, the length of the script
 *   bytes 3..3+K  script: one byte per step, cycled
 *   the rest      link bytes from the peer, starting with BIND
 * A script byte's low 5 bits pick how many link bytes the step feeds
 * (31: all that remain, else n*n+1); its high 3 bits (FM_ACT_*) an action
 * taken after the feed.
 */
#ifndef TLSPLEX_FUZZ_MUX_H
#define TLSPLEX_FUZZ_MUX_H

#define FM_DIALER 0x01        /* the session opens odd ids */
#define FM_SMALL_FRAME 0x02   /* max_frame 1024, else 16384 */
#define FM_SMALL_LWIN 0x04    /* local_window 1024, else 65536 */
#define FM_SMALL_PWIN 0x08    /* peer_window 1024, else 65536 */
#define FM_FEW_LOCAL 0x10     /* local_max_streams 2, else 100 */
#define FM_FEW_PEER 0x20      /* peer_max_streams 1, else 100 */
#define FM_EAGER 0x40         /* on_data consumes at once */
#define FM_CLOSE_ALL 0x80     /* mux_close_all before mux_free */

#define FF_LINK_ACK 0x01      /* settings.link_ack */
#define FF_BUDGET 0x06        /* budget: 0 none, 1 the minimum, 2 64k, 3 1m */
#define FF_BUDGET_SHIFT 1
#define FF_SPARSE 0x08        /* sparse_quantum MUX_SPARSE_QUANTUM, else 0 */
#define FF_ANSWER 0x10        /* after the link bytes, answer our probes */
#define FF_ANSWER_OLDEST 0x20 /* ... the oldest outstanding, else the newest */
#define FF_REBUDGET 0x40      /* ... and change the budget between sends */
#define FF_NO_REVERSE 0x80    /* settings.reverse off (the acceptor opens
				 nothing, the dialler refuses its OPENs) */

#define FM_FEED_ALL 31
#define FM_ACT_NONE 0
#define FM_ACT_SEND_SMALL 1
#define FM_ACT_SEND_BIG 2
#define FM_ACT_OPEN 3
#define FM_ACT_CONSUME 4
#define FM_ACT_PING 5
#define FM_ACT_GOAWAY 6
#define FM_ACT_RESET 7
#define FM_STEP(feed, act) ((unsigned char)((act) << 5 | (feed)))

/* The transcript hash both sides use. */
#define FM_BIND_BYTE(i) ((unsigned char)(0xB0 ^ (i) * 7))

#endif
