import { createCipheriv, createDecipheriv } from 'node:crypto';
import { createRequire } from 'node:module';
import { SplinterError } from '@splinter/errors';

/**
 * Who runs AES-256-GCM: `native` is the addon in `native/seal.c` (OpenSSL EVP through node's own
 * OpenSSL, writing into buffers we allocate without zero-filling), `node:crypto` the fallback when the
 * addon was not built. Both produce the same bytes.
 */
export type SealBackend = 'native' | 'node:crypto';

/** One blob's AES-256-GCM pass: the part sealing and opening share. */
interface GcmUpdate {
  /** Enciphers or deciphers `input`, handing each output buffer over to `push`. */
  update(input: Buffer, push: (output: Buffer) => void): void;
}
export interface SealGcm extends GcmUpdate {
  /** The tag over everything updated. */
  tag(): Buffer;
}
export interface OpenGcm extends GcmUpdate {
  /** Whether everything updated carries this tag. */
  verify(tag: Buffer): boolean;
}

declare const contextBrand: unique symbol;
type NativeContext = { readonly [contextBrand]: true };
interface NativeAddon {
  create(key: Uint8Array, nonce: Uint8Array, encrypt: boolean): NativeContext;
  update(context: NativeContext, input: Uint8Array, output: Uint8Array): void;
  seal(context: NativeContext): Buffer;
  verify(context: NativeContext, tag: Uint8Array): boolean;
  /** A Buffer of `size` uninitialized bytes whose memory the addon recycles once V8 has collected it. */
  block(size: number): Buffer;
  blockStats(): NativeBlockStats;
  /** Seals a whole file on a worker thread (see `native/seal.c`); sha256 is over the sealed bytes. */
  sealFile(inFd: number, outFd: number, key: Uint8Array, nonce: Uint8Array): Promise<Required<FileResult>>;
  /** Opens a whole sealed file on a worker thread; outFd -1 writes nothing. */
  openFile(inFd: number, outFd: number, key: Uint8Array, hash: boolean): Promise<FileResult>;
}

/** What a whole-file pass reports. */
export interface FileResult {
  /** The sealed blob's size: nonce, ciphertext and tag. */
  sealedBytes: number;
  plainBytes: number;
  /** Whether the tag verified (always true for sealing). */
  authentic: boolean;
  /** SHA-256 of the sealed bytes, in hex, when asked for. */
  sha256?: string;
}

/** The addon's output-block counters since it loaded (process-wide), for tests and benchmarks. */
export interface NativeBlockStats {
  /** Blocks made over freshly malloc'd memory. */
  allocated: number;
  /** Blocks made over the memory of blocks V8 had collected. */
  reused: number;
  /** Blocks found collected through their weak reference (before node ran their finalizer). */
  collected: number;
  /** Block finalizers node has run (from an event-loop turn, often long after the collection). */
  finalized: number;
  /** Memory of blocks not yet known to be collected. */
  liveBytes: number;
  /** Memory on the addon's free list. */
  pooledBytes: number;
}

/** node:crypto runs AES-GCM about twice as fast on cache-sized slices as on 1 MiB buffers (measured). */
const NODE_SLICE_BYTES = 16 * 1024;
/**
 * The native path's output blocks. Outputs are carved from the current block one after another (as
 * node carves small Buffers from its pool), so a 1 MiB input costs one native call, one push and, every
 * block, one `block()` call; an input that crosses a block's end is split across two. The blocks'
 * memory is recycled by the addon (see `native/seal.c`): fresh buffers of this size would land on fresh
 * pages, a page fault per 4 KiB. 256 KiB, 1 MiB and 4 MiB blocks measured alike; 1 MiB keeps at most
 * that much alive behind a small output some consumer keeps.
 */
export const NATIVE_BLOCK_BYTES = 1024 * 1024;

const native = loadNative();

function loadNative(): { addon?: NativeAddon; error?: string } {
  try {
    // build/Release sits beside src/ and dist/, so the path holds from sources and from the build.
    return { addon: createRequire(import.meta.url)('../build/Release/seal.node') as NativeAddon };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

/** The addon's output-block counters, undefined without the addon. */
export function nativeBlockStats(): NativeBlockStats | undefined {
  return native.addon?.blockStats();
}

/** The backend streams use by default, and why the native one is missing if it is. */
export function sealBackend(): { backend: SealBackend; nativeUnavailable?: string } {
  return native.addon ? { backend: 'native' } : { backend: 'node:crypto', nativeUnavailable: native.error };
}

export function createSealGcm(key: Uint8Array, nonce: Uint8Array, backend?: SealBackend): SealGcm {
  const addon = nativeAddonFor(backend);
  if (!addon) {
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    return {
      update: slicedUpdate(cipher),
      tag() {
        cipher.final(); // GCM's final emits no bytes; it completes the tag
        return cipher.getAuthTag();
      },
    };
  }
  const context = addon.create(key, nonce, true);
  return { update: nativeUpdate(addon, context), tag: () => addon.seal(context) };
}

export function createOpenGcm(key: Uint8Array, nonce: Uint8Array, backend?: SealBackend): OpenGcm {
  const addon = nativeAddonFor(backend);
  if (!addon) {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    return {
      update: slicedUpdate(decipher),
      verify(tag) {
        try {
          decipher.setAuthTag(tag);
          decipher.final();
          return true;
        } catch {
          return false;
        }
      },
    };
  }
  const context = addon.create(key, nonce, false);
  return { update: nativeUpdate(addon, context), verify: (tag) => addon.verify(context, tag) };
}

/** The addon for `backend` (default: whichever loaded), undefined for node:crypto. */
export function nativeAddonFor(backend: SealBackend = sealBackend().backend): NativeAddon | undefined {
  if (backend === 'node:crypto') return undefined;
  if (!native.addon) {
    throw new SplinterError('INVALID_ARGUMENT', `the native AES-GCM addon is not loaded: ${native.error}`);
  }
  return native.addon;
}

/**
 * The block outputs are carved from, shared by every native stream of this thread: carving is
 * synchronous, and a carved output is never written again, so streams cannot see each other's bytes.
 * Sharing keeps a small blob from taking a block of its own.
 */
const arena: { block?: Buffer; used: number } = { used: 0 };

function nativeUpdate(addon: NativeAddon, context: NativeContext): GcmUpdate['update'] {
  return (input, push) => {
    // Not in place: the input may still be read elsewhere (pull tees downloaded bytes into the cache).
    // Each output is handed over for good (the consumer may keep it forever); its block's memory is
    // reused only after V8 has collected every view of the block.
    for (let offset = 0; offset < input.byteLength; ) {
      if (arena.block === undefined || arena.used === arena.block.byteLength) {
        arena.block = addon.block(NATIVE_BLOCK_BYTES);
        arena.used = 0;
      }
      const length = Math.min(input.byteLength - offset, arena.block.byteLength - arena.used);
      const output = arena.block.subarray(arena.used, arena.used + length);
      arena.used += length;
      addon.update(context, input.subarray(offset, offset + length), output);
      offset += length;
      push(output);
    }
  };
}

function slicedUpdate(cipher: { update(data: Buffer): Buffer }): GcmUpdate['update'] {
  return (input, push) => {
    for (let offset = 0; offset < input.byteLength; offset += NODE_SLICE_BYTES) {
      push(cipher.update(input.subarray(offset, offset + NODE_SLICE_BYTES)));
    }
  };
}
