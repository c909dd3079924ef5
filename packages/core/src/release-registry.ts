import type { StoredStatement } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import {
  type Descriptor,
  descriptorFor,
  EMPTY_JSON,
  type ImageManifest,
  MediaType,
  readAllLimited,
  type Target,
} from '@splintertree/oci';
import { MAX_RELEASE_ENVELOPE_BYTES } from '@splintertree/sign';
import { EMPTY_CONFIG } from './artifact.js';
import { fetchManifest } from './install.js';

/** The artifact type of a published release statement, and its one layer's media type (DSSE). */
const RELEASE_ARTIFACT_TYPE = 'application/vnd.splintertree.release.v1+json';
const DSSE_ENVELOPE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
/** The tag that names the newest published statement, in the repository of the realm's patches. */
export const RELEASE_TAG = 'release';

/**
 * Publishes a statement beside the patches: an OCI artifact (empty config, the DSSE envelope as its
 * one layer) tagged `release` in the head's repository. The tag moves to each newer statement; a
 * launcher that reads it trusts it no more than one from the API (it verifies the signature).
 */
export async function publishStatement(target: Target, stored: StoredStatement): Promise<Descriptor> {
  const envelope = Buffer.from(stored.envelope, 'utf8');
  const layer = descriptorFor(DSSE_ENVELOPE_MEDIA_TYPE, envelope);
  await target.push(EMPTY_CONFIG, EMPTY_JSON);
  await target.push(layer, envelope);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    artifactType: RELEASE_ARTIFACT_TYPE,
    config: EMPTY_CONFIG,
    layers: [layer],
    annotations: {
      'dev.splintertree.release.realm': stored.realm,
      'dev.splintertree.release.sequence': stored.sequence,
      'dev.splintertree.release.expires': stored.expiresAt,
    },
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const descriptor = descriptorFor(MediaType.ImageManifest, bytes);
  await target.push(descriptor, bytes);
  await target.tag(descriptor, RELEASE_TAG);
  return descriptor;
}

/** The envelope published at `release` in this repository; RELEASE_MISSING when there is none. */
export async function readPublishedStatement(target: Target): Promise<string> {
  let descriptor: Descriptor;
  try {
    descriptor = await target.resolve(RELEASE_TAG);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== 'NOT_FOUND' && code !== 'MANIFEST_UNKNOWN') throw error;
    throw new SplinterError('RELEASE_MISSING', `${target.location} has no published release statement`);
  }
  const manifest = await fetchManifest(target, descriptor);
  const layer = manifest.layers[0];
  if (
    manifest.artifactType !== RELEASE_ARTIFACT_TYPE ||
    manifest.layers.length !== 1 ||
    layer?.mediaType !== DSSE_ENVELOPE_MEDIA_TYPE
  ) {
    throw new SplinterError(
      'RELEASE_INVALID',
      `${target.location}:${RELEASE_TAG} is not a release statement`,
    );
  }
  if (layer.size > MAX_RELEASE_ENVELOPE_BYTES) {
    throw new SplinterError(
      'RELEASE_INVALID',
      `${target.location}:${RELEASE_TAG} is ${layer.size} bytes, over the limit of ${MAX_RELEASE_ENVELOPE_BYTES}`,
    );
  }
  return (await readAllLimited(await target.fetch(layer), MAX_RELEASE_ENVELOPE_BYTES)).toString('utf8');
}
