/*
 * The negotiation decision: a pure function of both sides' parameters.
 */
#ifndef TLSPLEX_POLICY_H
#define TLSPLEX_POLICY_H

#include "neg.h"

/* A cipher suite tlsplex knows by IANA id. */
struct cipher_info {
	uint16_t id;
	uint16_t version;    /* TLSV_1_3 for 1.3 suites, TLSV_1_2 for 1.2 suites */
	const char *iana;    /* e.g. "TLS_AES_128_GCM_SHA256" */
	const char *wolfssl; /* wolfSSL cipher-list name, e.g. "TLS13-AES128-GCM-SHA256" */
};

/* Looks a suite up by id or by either name; NULL when unknown. */
const struct cipher_info *cipher_by_id(uint16_t id);
const struct cipher_info *cipher_by_name(const char *name);
/* The table, terminated by an entry with id 0. */
const struct cipher_info *cipher_table(void);

/*
 * Decides the link outcome from the dialler's and the acceptor's
 * parameters.  Fills out->result, out->reason and, for TLS, the agreed
 * version range and the common suites in the acceptor's order.
 * The function is pure: the dialler recomputes it to check a decision.
 */
void policy_decide(const struct neg_params *dialer,
		   const struct neg_params *acceptor, struct neg_outcome *out);

/*
 * Checks a DECISION or REFUSE received by the dialler against its own
 * parameters.  Returns 0 when the dialler may proceed with the decision's
 * outcome, or -1 with *reason set to NEG_R_DECISION_MISMATCH (the
 * decision does not follow from the two offers), NEG_R_POLICY_VIOLATION
 * (it breaks the dialler's policy), or the refusal's own reason.
 */
int policy_check_decision(const struct neg_params *mine,
			  const struct neg_msg *decision, uint16_t *reason);

/* The mux limits both sides use: the smaller max_frame and keepalive
 * (ignoring 0), each side's own max_streams and window as it sent them,
 * and link_ack when both sides announced NEG_FLOW_LINK_ACK. */
struct mux_limits {
	uint32_t max_frame;
	uint32_t keepalive_ms;
	uint32_t local_window, peer_window;
	uint32_t local_max_streams, peer_max_streams;
	int link_ack;
};
void policy_mux_limits(const struct neg_params *local,
		       const struct neg_params *peer, struct mux_limits *out);
/* Nonzero when the acceptor may open streams on the link: the dialler
 * announced NEG_FLOW_REVERSE (an acceptor's bit means nothing).  dialer
 * says which side local is. */
int policy_reverse(int dialer, const struct neg_params *local,
		   const struct neg_params *peer);

#endif
