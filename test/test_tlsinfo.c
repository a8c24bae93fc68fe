/*
 * What the daemons report about the linked wolfSSL, and the default
 * cipher order that follows from it.  Runs against either build
 * (TLSPLEX_WOLFSSL_BUILD "fast" or "system").
 */
#include <criterion/criterion.h>
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/version.h>

#include "config.h"
#include "daemon.h"
#include "policy.h"
#include "tlsio.h"

#ifdef WOLFSSL_AESNI
#define AESNI_BUILT 1
#else
#define AESNI_BUILT 0
#endif

/* AES-NI and PCLMULQDQ from CPUID leaf 1 (ECX bits 25 and 1), read
 * directly rather than through the compiler's builtin the code uses. */
static int
cpu_has_aes(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	return (c & (1u << 25)) && (c & (1u << 1));
}

static int
is_gcm(uint16_t id)
{
	const struct cipher_info *ci = cipher_by_id(id);

	return ci != NULL && strstr(ci->iana, "_GCM_") != NULL;
}

static int
is_chacha(uint16_t id)
{
	const struct cipher_info *ci = cipher_by_id(id);

	return ci != NULL && strstr(ci->iana, "CHACHA20_POLY1305") != NULL;
}

static struct cfg *
load(const char *text)
{
	char err[512];
	struct cfg *c = cfg_load_string(text, "test.ini", CFG_RELAY, err,
					sizeof(err));

	cr_assert_not_null(c, "config rejected: %s", err);
	return c;
}

Test(tlsinfo, describe_names_version_and_build)
{
	const char *d = tls_library_describe();
	char want[64];

	snprintf(want, sizeof(want), "wolfSSL %s ", LIBWOLFSSL_VERSION_STRING);
	cr_assert(strncmp(d, want, strlen(want)) == 0, "%s", d);
	if (strcmp(TLSPLEX_WOLFSSL_BUILD, "fast") == 0) {
		cr_assert(strstr(d, "built from Debian source with AES-NI") != NULL,
			  "%s", d);
		cr_assert(AESNI_BUILT, "the fast build must define WOLFSSL_AESNI");
	} else {
		cr_assert_str_eq(TLSPLEX_WOLFSSL_BUILD, "system");
		cr_assert(strstr(d, "(system library") != NULL, "%s", d);
	}
	cr_assert_eq(strstr(d, "AES-NI active") != NULL, tls_aes_fast() != 0,
		     "%s", d);
	cr_assert_eq(strstr(d, "AES-NI not compiled in") != NULL, !AESNI_BUILT,
		     "%s", d);
}

Test(tlsinfo, aes_fast_follows_build_and_cpu)
{
	cr_assert_eq(tls_aes_fast() != 0, AESNI_BUILT && cpu_has_aes());
}

Test(tlsinfo, order_ciphers_groups_and_keeps_order)
{
	/* CHACHA13, AES128-GCM13, ECDHE-RSA-CHACHA, ECDHE-RSA-AES256-GCM,
	 * AES256-GCM13 */
	const uint16_t in[] = { 0x1303, 0x1301, 0xCCA8, 0xC030, 0x1302 };
	const uint16_t aes[] = { 0x1301, 0xC030, 0x1302, 0x1303, 0xCCA8 };
	const uint16_t cha[] = { 0x1303, 0xCCA8, 0x1301, 0xC030, 0x1302 };
	uint16_t ids[5];

	memcpy(ids, in, sizeof(ids));
	tls_order_ciphers(ids, 5, 1);
	cr_assert_arr_eq(ids, aes, sizeof(ids));
	memcpy(ids, in, sizeof(ids));
	tls_order_ciphers(ids, 5, 0);
	cr_assert_arr_eq(ids, cha, sizeof(ids));
	tls_order_ciphers(ids, 0, 1);
}

Test(tlsinfo, default_order_puts_gcm_first_iff_aes_fast)
{
	struct cfg *c = load("[relay]\ntls = off\n"
			     "[service s]\nbackend = 127.0.0.1:80\n");
	struct neg_params p;
	size_t i, n_gcm = 0, n_cha = 0;

	cr_assert(c->ciphers_auto);
	daemon_params(c, &p);
	cr_assert_eq(p.n_ciphers, c->n_ciphers);
	for (i = 0; i < p.n_ciphers; i++) {
		n_gcm += is_gcm(p.ciphers[i]);
		n_cha += is_chacha(p.ciphers[i]);
	}
	cr_assert(n_gcm > 0 && n_cha > 0);
	if (tls_aes_fast()) {
		for (i = 0; i < n_gcm; i++)
			cr_assert(is_gcm(p.ciphers[i]), "suite %zu", i);
	} else {
		for (i = 0; i < n_cha; i++)
			cr_assert(is_chacha(p.ciphers[i]), "suite %zu", i);
	}
	/* Same suites as the configured default, only reordered. */
	for (i = 0; i < c->n_ciphers; i++) {
		size_t j;

		for (j = 0; j < p.n_ciphers; j++)
			if (p.ciphers[j] == c->ciphers[i])
				break;
		cr_assert_lt(j, p.n_ciphers, "suite %#x lost", c->ciphers[i]);
	}
	cfg_free(c);
}

Test(tlsinfo, explicit_ciphers_keep_their_order)
{
	struct cfg *c = load("[relay]\ntls = off\n"
			     "ciphers = TLS_CHACHA20_POLY1305_SHA256:"
			     "TLS_AES_128_GCM_SHA256\n"
			     "[service s]\nbackend = 127.0.0.1:80\n");
	struct neg_params p;

	cr_assert_not(c->ciphers_auto);
	daemon_params(c, &p);
	cr_assert_eq(p.n_ciphers, 2);
	cr_assert_eq(p.ciphers[0], 0x1303);
	cr_assert_eq(p.ciphers[1], 0x1301);
	cfg_free(c);
}
