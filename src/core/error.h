// zimage::Error, fail, with_component and ZI_ASSERT are public (include/zimage/error.h): a user of
// the library catches zimage::Error. This path stays for the engine's own sources.
#pragma once
#include "zimage/error.h"
