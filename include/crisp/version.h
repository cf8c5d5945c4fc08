#ifndef CRISP_VERSION_H
#define CRISP_VERSION_H
#ifndef CRISP_VERSION
#define CRISP_VERSION "0.1.0"
#endif
#endif
