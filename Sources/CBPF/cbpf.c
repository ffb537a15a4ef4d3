#include "CBPF.h"
