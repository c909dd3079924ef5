export type { Fault, FaultProxy, FaultRule } from './fault-proxy.js';
export { startFaultProxy } from './fault-proxy.js';
export { freePort } from './ports.js';
export type { RegistryOptions, RunningRegistry } from './registry.js';
export { startRegistry } from './registry.js';
export type { TokenService } from './token-service.js';
export { startTokenService } from './token-service.js';
export { requireTool } from './tools.js';
