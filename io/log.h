/*
 * Logging for the I/O layer and the daemons.  The pure core never logs;
 * errors are logged once, where they are found, with a reason a person
 * can act on.
 */
#ifndef TLSPLEX_LOG_H
#define TLSPLEX_LOG_H

enum log_level {
	LOG_ERR = 0,
	LOG_WARN = 1,
	LOG_INFO = 2,
	LOG_DEBUG = 3,
};

/* Sets the program name shown on each line and the most verbose level
 * that is written.  Lines go to stderr. */
void log_init(const char *prog, int level);
void log_set_level(int level);
int log_get_level(void);

void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
