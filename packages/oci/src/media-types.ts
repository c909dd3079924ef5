export const MediaType = {
  ImageManifest: 'application/vnd.oci.image.manifest.v1+json',
  ImageIndex: 'application/vnd.oci.image.index.v1+json',
  ImageConfig: 'application/vnd.oci.image.config.v1+json',
  Empty: 'application/vnd.oci.empty.v1+json',
  LayerTar: 'application/vnd.oci.image.layer.v1.tar',
  LayerTarGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  OciLayoutHeader: 'application/vnd.oci.layout.header.v1+json',
} as const;

/** Media types a manifest request accepts, OCI first (CNCF Distribution hides OCI manifests without them). */
export const MANIFEST_ACCEPT = [
  MediaType.ImageManifest,
  MediaType.ImageIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
] as const;

export const Annotation = {
  Title: 'org.opencontainers.image.title',
  Created: 'org.opencontainers.image.created',
  RefName: 'org.opencontainers.image.ref.name',
  OrasContentDigest: 'io.deis.oras.content.digest',
  OrasContentUnpack: 'io.deis.oras.content.unpack',
} as const;

/** The 2-byte `{}` blob ORAS and cosign use as the config of an artifact manifest. */
export const EMPTY_JSON = new Uint8Array([0x7b, 0x7d]);
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

/** Registries must accept manifests of at least 4 MiB; we refuse anything larger, both ways. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
