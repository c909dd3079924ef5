export { PackAnnotation } from './annotations.js';
export type { UnpackResult } from './group-unpack.js';
export { safeRelativePath } from './paths.js';
export type { LayerPlan, OpenedLayer, PackOptions } from './plan.js';
export { planLayers } from './plan.js';
export type { FinalizeOptions, UnpackLimits } from './unpack.js';
export {
  finalizeTree,
  isFileLayer,
  placeFileLayer,
  unpackLayer,
  writeFileLayer,
} from './unpack.js';
export type { TreeEntry } from './walk.js';
export { walkTree } from './walk.js';
