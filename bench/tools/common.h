/* Shared helpers for the bench tools: address parsing, clocks, the
 * request header the backend understands. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <arpa/inet.h>

/* Request header a client sends first: mode byte, 7 zero bytes, then
 * the byte count in little-endian order.  'U' upload (the backend
 * discards SIZE bytes, then answers one byte 'K'), 'D' download (the
 * backend sends SIZE bytes), 'P' echo (the backend echoes everything). */
#define HDR_LEN 16

static inline void hdr_make(unsigned char *h, char mode, uint64_t size)
{
	memset(h, 0, HDR_LEN);
	h[0] = (unsigned char)mode;
	for (int i = 0; i < 8; i++)
		h[8 + i] = (unsigned char)(size >> (8 * i));
}

static inline uint64_t hdr_size(const unsigned char *h)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | h[8 + i];
	return v;
}

/* Parses "a.b.c.d:port" into sa; returns -1 on error. */
static inline int addr_parse(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	long port = strtol(colon + 1, NULL, 10);
	if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -1;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Parses a size with optional k/m/g suffix (powers of 1024). */
static inline uint64_t size_parse(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	default: break;
	}
	return v;
}

#endif
