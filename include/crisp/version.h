/* version.h - crisp's version: `git describe` at build time (the build
 * writes version.gen.h), 0.1.0 when built outside a checkout. */
#ifndef CRISP_VERSION_H
#define CRISP_VERSION_H
#if defined(__has_include)
#if __has_include("version.gen.h")
#include "version.gen.h"
#endif
#endif
#ifndef CRISP_VERSION
#define CRISP_VERSION "0.1.0"
#endif
#endif
