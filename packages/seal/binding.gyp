{
  "targets": [
    {
      "target_name": "seal",
      "sources": ["native/seal.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
