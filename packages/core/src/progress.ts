/** Where long transfers report their progress: one sink for push and pull, defined with the copy engine. */
export type { ProgressEvent, ProgressSink } from '@splintertree/oci';
