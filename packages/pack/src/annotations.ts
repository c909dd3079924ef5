/** Annotations splinter adds to layers beside the ORAS ones. */
export const PackAnnotation = {
  /** Octal mode of a file layer's file ("0644" or "0755"), so executable bits survive. */
  FileMode: 'dev.splintertree.file.mode',
  /** Uncompressed size of a group layer's tar: the bound an unpack may expand to. */
  ContentSize: 'dev.splintertree.content.size',
} as const;
