/*
 * tlsplex-report's printers: text (for people), JSON (for programs; one
 * object), Markdown (for tickets and CI summaries).
 */
#include "report.h"

#include <inttypes.h>
#include <string.h>

static const char *const group_names[] = { "peer", "service", "cipher", "node" };

static uint64_t
carried(const uint64_t *cls)
{
	return cls[RC_TLS] + cls[RC_PLAINTEXT];
}

static void
percent(char *buf, size_t len, uint64_t n, uint64_t m)
{
	if (m == 0)
		snprintf(buf, len, "no link carried streams");
	else
		snprintf(buf, len, "%.1f%%", 100.0 * (double)n / (double)m);
}

/* "1 tls, 2 plaintext" for the classes with links. */
static void
class_list(char *buf, size_t len, const uint64_t *cls)
{
	size_t n = 0;
	int c;

	buf[0] = '\0';
	for (c = 0; c < RC_COUNT && n < len; c++)
		if (cls[c] > 0)
			n += (size_t)snprintf(buf + n, len - n, "%s%" PRIu64 " %s",
					      n ? ", " : "", cls[c],
					      c == RC_NONE ? "no outcome" :
					      rpt_class_name(c));
}

/* The reference time, or "none" when there is nothing to refer to. */
static void
now_str(const struct report *r, char *buf, size_t len)
{
	if (r->events == 0 && !r->now_given)
		snprintf(buf, len, "none");
	else
		rpt_time_str(r->now_us, buf, len);
}

static const char *
result_word(const struct report *r)
{
	return r->exit_code == 0 ? "ready" : r->exit_code == 1 ? "not ready" :
	       "input problem";
}

/* The ids that decided the exit code, comma-separated. */
static void
decisive_ids(char *buf, size_t len, const struct report *r)
{
	size_t n = 0;
	int id;

	buf[0] = '\0';
	for (id = 0; id < TPX_COUNT && n < len; id++)
		if ((r->id_fail[id] || r->exit_code == 2) && r->id_count[id] > 0 &&
		    (r->exit_code != 2 || id == TPX_INPUT_GAP))
			n += (size_t)snprintf(buf + n, len - n, "%s%s (%" PRIu64 ")",
					      n ? ", " : "", rpt_id_name(id),
					      r->id_count[id]);
}

/* Streams on plaintext links per service: "echo 12, db 3". */
static void
plaintext_streams(char *buf, size_t len, const struct report *r)
{
	size_t n = 0, i, j;

	buf[0] = '\0';
	for (i = 0; i < r->nservices && n < len; i++) {
		uint64_t sum = 0;
		const char *svc = r->services[i].service;

		for (j = 0; j < i; j++)
			if (strcmp(r->services[j].service, svc) == 0)
				break;
		if (j < i)
			continue;
		for (j = i; j < r->nservices; j++)
			if (strcmp(r->services[j].service, svc) == 0 &&
			    r->services[j].protection != NULL &&
			    strcmp(r->services[j].protection, "plaintext") == 0)
				sum += r->services[j].streams;
		n += (size_t)snprintf(buf + n, len - n, "%s%s %" PRIu64,
				      n ? ", " : "", svc, sum);
	}
}

static void
print_text(FILE *out, const struct report *r)
{
	char ts[32], cl[256], pc[64], ids[512], sv[1024];
	size_t g, i;

	now_str(r, ts, sizeof(ts));
	fprintf(out, "tlsplex readiness report, by %s\n", group_names[r->group_by]);
	fprintf(out, "input: %zu file%s, %" PRIu64 " lines, %" PRIu64 " events from %"
		PRIu64 " daemon instances; reference time %s%s\n", r->files,
		r->files == 1 ? "" : "s", r->lines, r->events, r->instances, ts,
		r->now_given || r->events == 0 ? "" : " (the latest event)");
	class_list(cl, sizeof(cl), r->cls);
	fprintf(out, "links: %" PRIu64 " (%" PRIu64 " joined by transcript, %" PRIu64
		" by address, %" PRIu64 " one side only)%s%s\n", r->links,
		r->joined_transcript, r->joined_address, r->one_side,
		cl[0] ? ": " : "", cl);
	if (r->tcp_refused > 0)
		fprintf(out, "refused at the TCP stage: %" PRIu64 " connections\n",
			r->tcp_refused);
	percent(pc, sizeof(pc), r->cls[RC_TLS], carried(r->cls));
	fprintf(out, "readiness %" PRIu64 "/%" PRIu64 " links encrypted (%s)",
		r->cls[RC_TLS], carried(r->cls), pc);
	if (r->exempt > 0)
		fprintf(out, "; %" PRIu64 " plaintext by --allow-plaintext", r->exempt);
	fprintf(out, "\n");
	if (r->service_data) {
		plaintext_streams(sv, sizeof(sv), r);
		fprintf(out, "streams on plaintext links per service: %s\n", sv);
	} else {
		fprintf(out, "streams on plaintext links per service: no data "
			"(no service_summary records)\n");
	}
	for (g = 0; g < r->ngroups; g++) {
		const struct rpt_groupstat *gs = &r->groups[g];

		class_list(cl, sizeof(cl), gs->cls);
		percent(pc, sizeof(pc), gs->cls[RC_TLS], carried(gs->cls));
		fprintf(out, "\n%s %s: %" PRIu64 " link%s%s%s%s, %" PRIu64 "/%" PRIu64
			" encrypted (%s)", group_names[r->group_by], gs->name,
			gs->links, gs->links == 1 ? "" : "s", cl[0] ? " (" : "", cl,
			cl[0] ? ")" : "", gs->cls[RC_TLS], carried(gs->cls), pc);
		if (gs->tcp_refused > 0)
			fprintf(out, "; %" PRIu64 " refused at the TCP stage",
				gs->tcp_refused);
		fprintf(out, "\n");
		for (i = 0; i < r->nfindings; i++) {
			const struct rpt_finding *f = &r->findings[i];

			if (strcmp(f->group, gs->name) != 0)
				continue;
			fprintf(out, "  %s %-18s %6" PRIu64 "  %s  [e.g. %s]\n",
				f->fail ? "FAIL" : "WARN", rpt_id_name(f->id),
				f->count, f->subject, f->example);
		}
	}
	for (i = 0; i < r->nfindings; i++) {
		const struct rpt_finding *f = &r->findings[i];

		if (strcmp(f->group, "(input)") != 0)
			continue;
		if (i == 0 || strcmp(r->findings[i - 1].group, "(input)") != 0)
			fprintf(out, "\ninput:\n");
		fprintf(out, "  %s %-18s %6" PRIu64 "  %s  [%s]\n",
			f->fail ? "FAIL" : "WARN", rpt_id_name(f->id), f->count,
			f->subject, f->example);
	}
	if (r->events == 0)
		fprintf(out, "\nno events in the input\n");
	decisive_ids(ids, sizeof(ids), r);
	fprintf(out, "\nresult: %s%s%s (exit %d)\n", result_word(r),
		ids[0] ? ": " : "", ids, r->exit_code);
}

static void
jstr(FILE *out, const char *s)
{
	if (s == NULL) {
		fputs("null", out);
		return;
	}
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void
jclasses(FILE *out, const uint64_t *cls)
{
	int c;

	for (c = 0; c < RC_COUNT; c++)
		fprintf(out, ",\"%s\":%" PRIu64, c == RC_NONE ? "no_outcome" :
			rpt_class_name(c), cls[c]);
}

static void
print_json(FILE *out, const struct report *r)
{
	char ts[32];
	size_t i;
	int id;

	now_str(r, ts, sizeof(ts));
	fprintf(out, "{\"report\":\"tlsplex-readiness\",\"version\":1,"
		"\"group_by\":\"%s\",\"now\":", group_names[r->group_by]);
	jstr(out, strcmp(ts, "none") == 0 ? NULL : ts);
	fprintf(out, ",\"min_tls\":\"1.%d\",\"cert_warn_days\":%ld,\n",
		r->min_tls - 10, r->cert_warn_days);
	fprintf(out, "\"input\":{\"files\":%zu,\"unreadable\":%zu,\"lines\":%" PRIu64
		",\"events\":%" PRIu64 ",\"malformed\":%" PRIu64 ",\"truncated\":%"
		PRIu64 ",\"duplicates\":%" PRIu64 ",\"instances\":%" PRIu64 "},\n",
		r->files, r->unreadable, r->lines, r->events, r->malformed,
		r->truncated, r->duplicates, r->instances);
	fprintf(out, "\"links\":{\"total\":%" PRIu64 ",\"joined_by_transcript\":%"
		PRIu64 ",\"joined_by_address\":%" PRIu64 ",\"one_side\":%" PRIu64,
		r->links, r->joined_transcript, r->joined_address, r->one_side);
	jclasses(out, r->cls);
	fprintf(out, ",\"plaintext_allowed\":%" PRIu64 ",\"tcp_refused\":%" PRIu64
		"},\n", r->exempt, r->tcp_refused);
	fprintf(out, "\"readiness\":{\"encrypted\":%" PRIu64 ",\"carried\":%" PRIu64
		",\"percent\":", r->cls[RC_TLS], carried(r->cls));
	if (carried(r->cls) > 0)
		fprintf(out, "%.1f},\n", 100.0 * (double)r->cls[RC_TLS] /
			(double)carried(r->cls));
	else
		fprintf(out, "null},\n");
	fprintf(out, "\"finding_counts\":{");
	for (id = 0; id < TPX_COUNT; id++)
		fprintf(out, "%s\"%s\":%" PRIu64, id ? "," : "", rpt_id_name(id),
			r->id_count[id]);
	fprintf(out, "},\n\"groups\":[");
	for (i = 0; i < r->ngroups; i++) {
		const struct rpt_groupstat *g = &r->groups[i];

		fprintf(out, "%s\n{\"group\":", i ? "," : "");
		jstr(out, g->name);
		fprintf(out, ",\"links\":%" PRIu64, g->links);
		jclasses(out, g->cls);
		fprintf(out, ",\"encrypted\":%" PRIu64 ",\"carried\":%" PRIu64
			",\"plaintext_allowed\":%" PRIu64 ",\"tcp_refused\":%" PRIu64
			"}", g->cls[RC_TLS], carried(g->cls), g->exempt,
			g->tcp_refused);
	}
	fprintf(out, "],\n\"findings\":[");
	for (i = 0; i < r->nfindings; i++) {
		const struct rpt_finding *f = &r->findings[i];

		fprintf(out, "%s\n{\"id\":\"%s\",\"level\":\"%s\",\"group\":",
			i ? "," : "", rpt_id_name(f->id), f->fail ? "FAIL" : "WARN");
		jstr(out, f->group);
		fprintf(out, ",\"subject\":");
		jstr(out, f->subject);
		fprintf(out, ",\"count\":%" PRIu64 ",\"example\":", f->count);
		jstr(out, f->example);
		fprintf(out, "}");
	}
	fprintf(out, "],\n\"services\":");
	if (!r->service_data) {
		fprintf(out, "null");
	} else {
		fprintf(out, "[");
		for (i = 0; i < r->nservices; i++) {
			fprintf(out, "%s{\"service\":", i ? "," : "");
			jstr(out, r->services[i].service);
			fprintf(out, ",\"protection\":");
			jstr(out, r->services[i].protection);
			fprintf(out, ",\"streams\":%" PRIu64 "}",
				r->services[i].streams);
		}
		fprintf(out, "]");
	}
	fprintf(out, ",\n\"result\":\"%s\",\"exit\":%d}\n", result_word(r),
		r->exit_code);
}

/* A Markdown table cell: '|' and newlines would break the row. */
static void
mdcell(FILE *out, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', out);
		else
			fputc(*s, out);
	}
}

static void
print_markdown(FILE *out, const struct report *r)
{
	char ts[32], pc[64], ids[512], sv[1024];
	size_t i;
	int c;

	now_str(r, ts, sizeof(ts));
	percent(pc, sizeof(pc), r->cls[RC_TLS], carried(r->cls));
	decisive_ids(ids, sizeof(ids), r);
	fprintf(out, "# tlsplex readiness report\n\n");
	fprintf(out, "**%s**%s%s (exit %d). Readiness %" PRIu64 "/%" PRIu64
		" links encrypted (%s).\n\n", result_word(r), ids[0] ? ": " : "",
		ids, r->exit_code, r->cls[RC_TLS], carried(r->cls), pc);
	fprintf(out, "Input: %zu files, %" PRIu64 " events from %" PRIu64
		" daemon instances; reference time %s. Links: %" PRIu64 " (%"
		PRIu64 " joined by transcript, %" PRIu64 " by address, %" PRIu64
		" one side only); %" PRIu64 " connections refused at the TCP "
		"stage.\n\n", r->files, r->events, r->instances, ts, r->links,
		r->joined_transcript, r->joined_address, r->one_side,
		r->tcp_refused);
	if (r->service_data) {
		plaintext_streams(sv, sizeof(sv), r);
		fprintf(out, "Streams on plaintext links per service: %s.\n\n", sv);
	}
	fprintf(out, "| %s | links |", group_names[r->group_by]);
	for (c = 0; c < RC_COUNT; c++)
		fprintf(out, " %s |", c == RC_NONE ? "no outcome" : rpt_class_name(c));
	fprintf(out, " encrypted | TCP refusals |\n|---|---:|");
	for (c = 0; c < RC_COUNT; c++)
		fprintf(out, "---:|");
	fprintf(out, "---:|---:|\n");
	for (i = 0; i < r->ngroups; i++) {
		const struct rpt_groupstat *g = &r->groups[i];

		fprintf(out, "| ");
		mdcell(out, g->name);
		fprintf(out, " | %" PRIu64 " |", g->links);
		for (c = 0; c < RC_COUNT; c++)
			fprintf(out, " %" PRIu64 " |", g->cls[c]);
		fprintf(out, " %" PRIu64 "/%" PRIu64 " | %" PRIu64 " |\n",
			g->cls[RC_TLS], carried(g->cls), g->tcp_refused);
	}
	if (r->nfindings == 0) {
		fprintf(out, "\nNo findings.\n");
		return;
	}
	fprintf(out, "\n| level | finding | %s | count | subject | example |\n"
		"|---|---|---|---:|---|---|\n", group_names[r->group_by]);
	for (i = 0; i < r->nfindings; i++) {
		const struct rpt_finding *f = &r->findings[i];

		fprintf(out, "| %s | `%s` | ", f->fail ? "FAIL" : "WARN",
			rpt_id_name(f->id));
		mdcell(out, f->group);
		fprintf(out, " | %" PRIu64 " | ", f->count);
		mdcell(out, f->subject);
		fprintf(out, " | ");
		mdcell(out, f->example);
		fprintf(out, " |\n");
	}
}

void
report_print(FILE *out, const struct report *r)
{
	switch (r->format) {
	case RF_JSON:
		print_json(out, r);
		break;
	case RF_MARKDOWN:
		print_markdown(out, r);
		break;
	default:
		print_text(out, r);
		break;
	}
}
