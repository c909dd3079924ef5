export { nextCut } from './cut.js';
export { chunkFile } from './file.js';
export type { ChunkerOptions } from './options.js';
export { chunkerOptions, DEFAULT_CHUNKER } from './options.js';
export { chunkStream } from './stream.js';
