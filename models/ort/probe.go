package ort

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// stir_api_base mirrors OrtApiBase, whose layout ONNX Runtime keeps stable across versions.
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} stir_api_base;

typedef const stir_api_base *(*stir_get_api_base_fn)(void);

// stir_probe loads the library at path and reads its version. It returns 0 on success
// (the handle stays open), 1 when dlopen fails, 2 when OrtGetApiBase is missing, 3 when
// OrtGetApiBase returns NULL. api_ok is set when the library serves api_version. Error
// text goes to err.
static int stir_probe(const char *path, uint32_t api_version, char *ver, size_t ver_len,
		char *err, size_t err_len, int *api_ok) {
	*api_ok = 0;
	dlerror();
	void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		strncpy(err, e ? e : "unknown dlopen error", err_len - 1);
		err[err_len - 1] = 0;
		return 1;
	}
	stir_get_api_base_fn get = (stir_get_api_base_fn) dlsym(h, "OrtGetApiBase");
	if (get == NULL) {
		const char *e = dlerror();
		strncpy(err, e ? e : "OrtGetApiBase not found", err_len - 1);
		err[err_len - 1] = 0;
		dlclose(h);
		return 2;
	}
	const stir_api_base *base = get();
	if (base == NULL || base->GetVersionString == NULL) {
		dlclose(h);
		return 3;
	}
	const char *v = base->GetVersionString();
	strncpy(ver, v ? v : "", ver_len - 1);
	ver[ver_len - 1] = 0;
	*api_ok = base->GetApi != NULL && base->GetApi(api_version) != NULL;
	// Keep the library loaded: onnxruntime_go opens it again right after, and unloading
	// and reloading ONNX Runtime gains nothing.
	return 0;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// probeResult is what probeLibrary learns about a shared library.
type probeResult struct {
	version string // GetVersionString of the library
	apiOK   bool   // the library serves APIVersion
}

// probeLibrary dlopens path and asks it for its version without creating an environment.
// Errors name what kind of file path turned out to be.
func probeLibrary(path string) (probeResult, error) {
	cPath := C.CString(path)
	defer C.free(unsafe.Pointer(cPath))
	var ver, msg [256]C.char
	var apiOK C.int
	rc := C.stir_probe(cPath, C.uint32_t(APIVersion), &ver[0], C.size_t(len(ver)),
		&msg[0], C.size_t(len(msg)), &apiOK)
	switch rc {
	case 0:
		return probeResult{version: C.GoString(&ver[0]), apiOK: apiOK != 0}, nil
	case 1:
		return probeResult{}, fmt.Errorf("cannot load it as a shared library: %s", C.GoString(&msg[0]))
	case 2:
		return probeResult{}, fmt.Errorf("it is a shared library but not ONNX Runtime (no OrtGetApiBase symbol: %s)", C.GoString(&msg[0]))
	default:
		return probeResult{}, fmt.Errorf("its OrtGetApiBase returned no API table")
	}
}
