/** What the launcher API answers, shared by the server (apps/api) and the client (launcher-client.ts). */

export interface UnlockGrant {
  patchId: string;
  keyId: string;
  /** The 32-byte patch key, base64. */
  key: string;
  /** The keys of the patch's sealed ancestors, whose records its version reuses (all live with it). */
  ancestors: Array<{ patchId: string; keyId: string; key: string }>;
}

export interface RealmPatch {
  id: string;
  version: string;
  parent: string | null;
  reference: string;
  digest: string;
  status: string;
  /** Set when the patch was published sealed for preload: the key its layers need. */
  keyId: string | null;
}

export interface RealmView {
  realm: string;
  head: RealmPatch | null;
  /** Root first, ending with the head. */
  chain: RealmPatch[];
  /** Published for preload, not yet activated: launchers may download these now. */
  preload: RealmPatch[];
}
