#!/usr/bin/env python3
"""The Hugging Face cache layout, written and read as huggingface_hub documents it, with the standard library only
(the tests must not depend on huggingface_hub being installed). Independent of the TypeScript code under test.

  hf_cache.py write CACHE REPO_ID REVISION COMMIT SRC_DIR [--absent FILE ...]
      lays SRC_DIR's files out as hf_hub_download would have cached them at COMMIT, with refs/REVISION
  hf_cache.py read CACHE REPO_ID REVISION FILE ...
      try_to_load_from_cache for each FILE, plus checks of what huggingface_hub relies on; prints one JSON object

Layout (https://huggingface.co/docs/huggingface_hub/guides/manage-cache):
  models--{org}--{name}/blobs/{etag}                  etag = sha256 (LFS files) or git blob sha1 (the others)
  models--{org}--{name}/snapshots/{commit}/{file}     relative symlink to ../../blobs/{etag}
  models--{org}--{name}/refs/{revision}               the commit hash, no newline
  models--{org}--{name}/.no_exist/{commit}/{file}     empty file: known not to exist
"""
import hashlib
import json
import os
import re
import sys

LFS_SUFFIXES = ('.safetensors', '.bin', '.pt', '.pth', '.gguf', '.onnx')


def repo_folder(cache, repo_id):
    return os.path.join(cache, '--'.join(['models', *repo_id.split('/')]))


def etag_of(name, data):
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


def write(cache, repo_id, revision, commit, src, absent):
    folder = repo_folder(cache, repo_id)
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), 'rb') as f:
            data = f.read()
        etag = etag_of(name, data)
        blob = os.path.join(folder, 'blobs', etag)
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        with open(blob, 'wb') as f:
            f.write(data)
        pointer = os.path.join(folder, 'snapshots', commit, name)
        os.makedirs(os.path.dirname(pointer), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(pointer)), pointer)
    for name in absent:
        p = os.path.join(folder, '.no_exist', commit, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, 'w').close()
    if revision != commit:
        ref = os.path.join(folder, 'refs', revision)
        os.makedirs(os.path.dirname(ref), exist_ok=True)
        with open(ref, 'w') as f:
            f.write(commit)


def try_to_load_from_cache(cache, repo_id, filename, revision):
    """huggingface_hub.try_to_load_from_cache: a path, 'NO_EXIST', or None."""
    folder = repo_folder(cache, repo_id)
    if not os.path.isdir(folder):
        return None
    ref = os.path.join(folder, 'refs', revision)
    if os.path.isfile(ref):
        with open(ref) as f:
            revision = f.read()
    if os.path.isfile(os.path.join(folder, '.no_exist', revision, filename)):
        return 'NO_EXIST'
    snapshots = os.path.join(folder, 'snapshots')
    if not os.path.exists(snapshots) or revision not in os.listdir(snapshots):
        return None
    path = os.path.join(snapshots, revision, filename)
    return path if os.path.isfile(path) else None


def read(cache, repo_id, revision, files):
    folder = repo_folder(cache, repo_id)
    out = {'files': {}, 'ref': None}
    ref = os.path.join(folder, 'refs', revision)
    if os.path.isfile(ref):
        with open(ref, 'rb') as f:
            out['ref'] = f.read().decode('ascii')
    for name in files:
        path = try_to_load_from_cache(cache, repo_id, name, revision)
        entry = {'path': path}
        if path and path != 'NO_EXIST':
            link = os.readlink(path) if os.path.islink(path) else None
            with open(path, 'rb') as f:
                data = f.read()
            blob = os.path.realpath(path)
            entry.update(
                link=link,
                blob_name=os.path.basename(blob),
                blob_in_blobs=os.path.dirname(blob) == os.path.realpath(os.path.join(folder, 'blobs')),
                etag_matches=etag_of(name, data) == os.path.basename(blob),
                size=len(data),
            )
        out['files'][name] = entry
    out['incomplete'] = sorted(f for f in os.listdir(os.path.join(folder, 'blobs')) if not re.fullmatch(r'[0-9a-f]{40}|[0-9a-f]{64}', f)) if os.path.isdir(os.path.join(folder, 'blobs')) else []
    print(json.dumps(out))


if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'write':
        absent = args[args.index('--absent') + 1:] if '--absent' in args else []
        plain = args[:args.index('--absent')] if '--absent' in args else args
        write(*plain, absent)
    elif cmd == 'read':
        read(args[0], args[1], args[2], args[3:])
    else:
        sys.exit('usage: hf_cache.py write|read ...')
