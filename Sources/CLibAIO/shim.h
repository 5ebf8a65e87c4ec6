// libaio (Debian's libaio-dev ships no pkg-config file, so the module map
// links -laio directly).
#ifndef CEVPL_LIBAIO_H
#define CEVPL_LIBAIO_H

#include <libaio.h>

#endif
