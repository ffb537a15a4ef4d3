#ifndef CLIBMNL_SHIM_H
#define CLIBMNL_SHIM_H
/* libmnl, located through pkg-config (see Package.swift: systemLibrary CLibmnl). */
#include <libmnl/libmnl.h>
#endif
