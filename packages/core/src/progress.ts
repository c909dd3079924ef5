/** Where long transfers report their progress (the CLI draws a bar; libraries pass nothing). */
export interface ProgressSink {
  begin(label: string, totalBytes: number): void;
  /** More work joined the transfer (a push learns its blobs as it packs them). */
  expect(bytes: number): void;
  advance(bytes: number): void;
  end(): void;
}
