export { PackAnnotation } from './annotations.js';
export type { LayerPlan, OpenedLayer, PackOptions } from './plan.js';
export { planLayers } from './plan.js';
export type { FinalizeOptions, UnpackLimits, UnpackResult } from './unpack.js';
export {
  finalizeTree,
  isFileLayer,
  placeFileLayer,
  safeRelativePath,
  unpackLayer,
  writeFileLayer,
} from './unpack.js';
export type { TreeEntry } from './walk.js';
export { walkTree } from './walk.js';
