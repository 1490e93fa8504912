// th_loader: a tiny N-API addon with no libtorch dependency. It dlopens libtorch's libraries by absolute path, on a
// libuv worker thread, before the main addon is required.
//
// Why: (1) the main addon is linked without an absolute RPATH, so it runs against whichever libtorch the search in
// scripts/libtorch.mjs found (LIBTORCH, PyTorch's Python package, the system): glibc satisfies the addon's DT_NEEDED
// entries (libtorch_cpu.so.1.13, ...) by SONAME from libraries already loaded, before it searches any path.
// (2) Loading libtorch (hundreds of MB of relocations and static initialisers) takes 1-5 s; done here it happens off
// the event loop, and requiring the main addon afterwards takes milliseconds.
//
// The handles are never closed: libtorch stays loaded for the life of the process, as it would through DT_NEEDED.
#include <dlfcn.h>
#include <stdio.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>

#define TH_MAX_LIBS 16
#define TH_PATH_MAX 4096

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  size_t count;
  size_t global_count;  // the first global_count paths are opened RTLD_GLOBAL, the rest RTLD_LOCAL
  char paths[TH_MAX_LIBS][TH_PATH_MAX];
  char failed_path[TH_PATH_MAX];
  char error[2048];
} PreloadJob;

// libtorch's libraries RTLD_GLOBAL, as Python's torch does for its global deps: later-loaded libraries (the addon,
// libtorch_cuda's plugins) resolve symbols against them. The addon itself RTLD_LOCAL, as Node's own dlopen would: it is
// opened here only so that its relocations (tens of ms against libtorch's symbol tables) happen off the event loop;
// Node's require() then finds it loaded. That is safe because an N-API module registers through its exported
// napi_register_module_v1 symbol, which Node looks up after its own dlopen, not through a static constructor.
// RTLD_NOW: a missing symbol fails here, with dlerror's text, not at a later call.
static int load_all(PreloadJob* job) {
  for (size_t i = 0; i < job->count; i++) {
    const int scope = i < job->global_count ? RTLD_GLOBAL : RTLD_LOCAL;
    if (dlopen(job->paths[i], RTLD_NOW | scope) == NULL) {
      const char* err = dlerror();
      strncpy(job->failed_path, job->paths[i], sizeof(job->failed_path) - 1);
      strncpy(job->error, err ? err : "dlopen failed", sizeof(job->error) - 1);
      return 0;
    }
  }
  return 1;
}

static napi_value make_error(napi_env env, const PreloadJob* job) {
  char message[TH_PATH_MAX + 2100];
  snprintf(message, sizeof(message), "%s", job->error);
  napi_value code, msg, err;
  napi_create_string_utf8(env, "ERR_TH_NATIVE", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &err);
  napi_value path;
  napi_create_string_utf8(env, job->failed_path, NAPI_AUTO_LENGTH, &path);
  napi_set_named_property(env, err, "path", path);
  return err;
}

static void execute(napi_env env, void* data) {
  (void)env;
  load_all((PreloadJob*)data);
}

static void complete(napi_env env, napi_status status, void* data) {
  PreloadJob* job = (PreloadJob*)data;
  if (status == napi_ok && job->error[0] == '\0') {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  } else {
    if (job->error[0] == '\0') strncpy(job->error, "the preload was cancelled", sizeof(job->error) - 1);
    napi_reject_deferred(env, job->deferred, make_error(env, job));
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

// Reads preload(paths, localCount)'s arguments into a job; throws a TypeError and returns NULL when they are wrong.
static PreloadJob* read_job(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_array = false;
  if (argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, "ERR_TH_ARG", "preload(paths, localCount): paths must be an array of library paths");
    return NULL;
  }
  uint32_t n = 0;
  napi_get_array_length(env, argv[0], &n);
  if (n > TH_MAX_LIBS) {
    napi_throw_type_error(env, "ERR_TH_ARG", "preload(paths, localCount): at most 16 libraries");
    return NULL;
  }
  uint32_t local = 0;
  if (argc >= 2 && (napi_get_value_uint32(env, argv[1], &local) != napi_ok || local > n)) {
    napi_throw_type_error(env, "ERR_TH_ARG", "preload(paths, localCount): localCount must be an integer from 0 to paths.length");
    return NULL;
  }
  PreloadJob* job = (PreloadJob*)calloc(1, sizeof(PreloadJob));
  if (job == NULL) {
    napi_throw_error(env, "ERR_TH_MEMORY", "out of memory");
    return NULL;
  }
  job->count = n;
  job->global_count = n - local;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    size_t len = 0;
    napi_get_element(env, argv[0], i, &item);
    if (napi_get_value_string_utf8(env, item, job->paths[i], TH_PATH_MAX, &len) != napi_ok || len == 0 ||
        len >= TH_PATH_MAX - 1) {
      free(job);
      napi_throw_type_error(env, "ERR_TH_ARG", "preload(paths): every path must be a non-empty string");
      return NULL;
    }
  }
  return job;
}

// preload(paths: string[], localCount = 0): Promise<void>. dlopens each path in order on a worker thread, the last
// localCount of them RTLD_LOCAL.
static napi_value Preload(napi_env env, napi_callback_info info) {
  PreloadJob* job = read_job(env, info);
  if (job == NULL) return NULL;
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "transformer-heads:preload", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

// preloadSync(paths: string[], localCount = 0): void. The same on the calling thread (blocks it for the whole load).
static napi_value PreloadSync(napi_env env, napi_callback_info info) {
  PreloadJob* job = read_job(env, info);
  if (job == NULL) return NULL;
  if (!load_all(job)) napi_throw(env, make_error(env, job));
  free(job);
  return NULL;
}

// isLoaded(name: string): boolean. Whether a library with this SONAME or path is loaded in the process already.
static napi_value IsLoaded(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[TH_PATH_MAX];
  size_t len = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_TH_ARG", "isLoaded(name): name must be a string");
    return NULL;
  }
  void* handle = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
  if (handle != NULL) dlclose(handle);  // drops only the reference RTLD_NOLOAD just took
  napi_value result;
  napi_get_boolean(env, handle != NULL, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"preload", NULL, Preload, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preloadSync", NULL, PreloadSync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isLoaded", NULL, IsLoaded, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
