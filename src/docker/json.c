/* json.c - reading the engine's JSON answers (codec.h): fields that may be
 * absent or of another type read as "", 0 or false. */
#define _GNU_SOURCE /* strptime, timegm */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "docker/codec.h"

cJSON *dk_obj(const cJSON *obj, const char *key)
{
    return obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

const char *dk_str(const cJSON *obj, const char *key)
{
    cJSON *v = dk_obj(obj, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

int dk_str_is(const cJSON *obj, const char *key, const char *want)
{
    assert(want);
    return strcmp(dk_str(obj, key), want) == 0;
}

/* A JSON number as int64: saturated at the ends, 0 for NaN (an engine's
 * odd answer must not be undefined behaviour). */
int64_t dk_num_i64(double d)
{
    if (d != d)
        return 0;
    if (d >= 9223372036854775807.0)
        return INT64_MAX;
    if (d <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)d;
}

int64_t dk_secs_to_ns(int64_t s)
{
    if (s > INT64_MAX / 1000000000LL)
        return INT64_MAX;
    if (s < INT64_MIN / 1000000000LL)
        return INT64_MIN;
    return s * 1000000000LL;
}

int64_t dk_int(const cJSON *obj, const char *key)
{
    cJSON *v = dk_obj(obj, key);
    return cJSON_IsNumber(v) ? dk_num_i64(v->valuedouble) : 0;
}

int dk_bool(const cJSON *obj, const char *key)
{
    return cJSON_IsTrue(dk_obj(obj, key));
}

/* ".123456789" -> nanoseconds (digits past the ninth ignored). */
static int64_t fraction_ns(const char **pp)
{
    const char *p = *pp;
    int64_t ns = 0;
    int digits = 0;
    if (*p != '.')
        return 0;
    for (p++; *p >= '0' && *p <= '9'; p++) {
        if (digits < 9) {
            ns = ns * 10 + (*p - '0');
            digits++;
        }
    }
    for (; digits < 9; digits++)
        ns *= 10;
    *pp = p;
    return ns;
}

/* "+hh:mm" / "-hh:mm" -> seconds east of UTC; 0 for "Z" or nothing. */
static int64_t zone_offset_s(const char *p)
{
    int hh = 0, mm = 0;
    if ((*p != '+' && *p != '-') || sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
        return 0;
    return (int64_t)(hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
}

int64_t dk_time_ns(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!s || !*s)
        return 0;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p || tm.tm_year + 1900 < 1971)
        return 0; /* Docker's zero time is 0001-01-01T00:00:00Z */
    int64_t ns = fraction_ns(&p);
    int64_t t = dk_secs_to_ns((int64_t)timegm(&tm) - zone_offset_s(p));
    return t > INT64_MAX - ns ? INT64_MAX : t + ns;
}

const char *dk_entry_name(const cJSON *entry)
{
    const cJSON *names = dk_obj(entry, "Names");
    const cJSON *first = cJSON_IsArray(names) ? cJSON_GetArrayItem(names, 0) : NULL;
    if (cJSON_IsString(first) && first->valuestring)
        return first->valuestring;
    return dk_str(entry, "Name");
}

const cJSON *dk_entry_labels(const cJSON *entry)
{
    const cJSON *l = dk_obj(entry, "Labels");
    return l ? l : dk_obj(dk_obj(entry, "Config"), "Labels");
}

int dk_entry_running(const cJSON *entry)
{
    const cJSON *state = dk_obj(entry, "State");
    return cJSON_IsObject(state) ? dk_bool(state, "Running") : dk_str_is(entry, "State", "running");
}
