/*
 * tls_sticky state file.
 */
#include "sticky.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "neg.h"

struct sticky {
	char path[1024];
	char (*names)[NEG_NODE_MAX + 1];
	size_t n, cap;
};

static int
sticky_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > NEG_NODE_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' ||
		      *s == '-' || *s == ':'))
			return 0;
	return 1;
}

static int
sticky_push(struct sticky *s, const char *name)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		void *p;

		if (ncap > STICKY_MAX)
			ncap = STICKY_MAX;
		if (ncap == s->cap)
			return -1;
		p = realloc(s->names, ncap * sizeof(*s->names));
		if (p == NULL)
			return -1;
		s->names = p;
		s->cap = ncap;
	}
	snprintf(s->names[s->n++], sizeof(s->names[0]), "%s", name);
	return 0;
}

struct sticky *
sticky_open(const char *path, char *err, size_t errlen)
{
	struct sticky *s;
	char line[256];
	FILE *fp;
	int lineno = 0;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	if (snprintf(s->path, sizeof(s->path), "%s", path) >=
	    (int)sizeof(s->path)) {
		snprintf(err, errlen, "%s: path too long", path);
		goto fail;
	}
	fp = fopen(path, "r");
	if (fp == NULL) {
		if (errno == ENOENT)
			return s;
		snprintf(err, errlen, "%s: cannot read the tls_sticky state: %s",
			 path, strerror(errno));
		goto fail;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t len = strlen(line);

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		else if (!feof(fp)) {
			snprintf(err, errlen, "%s:%d: line too long; expected "
				 "'tls NAME'", path, lineno);
			goto fail_fp;
		}
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (strncmp(line, "tls ", 4) != 0 || !sticky_name_ok(line + 4)) {
			snprintf(err, errlen, "%s:%d: '%.80s' is not a state "
				 "line; expected 'tls NAME' (fix or delete the "
				 "line; deleting forgets that peer)", path,
				 lineno, line);
			goto fail_fp;
		}
		if (!sticky_has(s, line + 4) && sticky_push(s, line + 4) < 0) {
			snprintf(err, errlen, "%s:%d: more than %d peers, or out "
				 "of memory", path, lineno, STICKY_MAX);
			goto fail_fp;
		}
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail_fp;
	}
	fclose(fp);
	return s;
fail_fp:
	fclose(fp);
fail:
	sticky_free(s);
	return NULL;
}

void
sticky_free(struct sticky *s)
{
	if (s == NULL)
		return;
	free(s->names);
	free(s);
}

const char *
sticky_path(const struct sticky *s)
{
	return s->path;
}

size_t
sticky_count(const struct sticky *s)
{
	return s != NULL ? s->n : 0;
}

int
sticky_has(const struct sticky *s, const char *name)
{
	if (s == NULL)
		return 0;
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return 1;
	return 0;
}

/* Writes every name to a temporary file and renames it over the state. */
static int
sticky_save(const struct sticky *s, char *err, size_t errlen)
{
	char tmp[1100];
	FILE *fp;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", s->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "%s: cannot write: %s", tmp,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(fp, "# tlsplex tls_sticky state: peers seen with TLS. Plaintext "
		"links with them are refused.\n# Delete a line to forget a "
		"peer.\n");
	for (size_t i = 0; i < s->n; i++)
		fprintf(fp, "tls %s\n", s->names[i]);
	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", tmp,
			 strerror(errno));
		fclose(fp);
		unlink(tmp);
		return -1;
	}
	if (fclose(fp) != 0 || rename(tmp, s->path) != 0) {
		snprintf(err, errlen, "%s: cannot replace: %s", s->path,
			 strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int
sticky_add(struct sticky *s, const char *name, char *err, size_t errlen)
{
	if (sticky_has(s, name))
		return 0;
	if (!sticky_name_ok(name)) {
		snprintf(err, errlen, "'%.80s' cannot be stored", name);
		return -1;
	}
	if (sticky_push(s, name) < 0) {
		snprintf(err, errlen, "%s: more than %d peers, or out of memory",
			 s->path, STICKY_MAX);
		return -1;
	}
	return sticky_save(s, err, errlen) < 0 ? -1 : 1;
}
