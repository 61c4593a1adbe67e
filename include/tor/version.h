/*
 * The version tor reports: `tor --version`, the start-up line and
 * tor_build_info on /metrics.
 */
#ifndef TOR_VERSION_H
#define TOR_VERSION_H

#define TOR_VERSION "0.1.0"

#endif
