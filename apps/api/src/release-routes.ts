import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { LauncherService, Principal } from './launcher-service.js';

const realmParams = z.object({ realm: z.string() });

/**
 * `GET /launcher/realms/:realm/release`: the realm's newest signed release statement, a DSSE
 * envelope exactly as it was signed at activation, rollback or refresh. The launcher verifies it
 * against its own release keys, so this route asks for no trust in the API; its ETag is the
 * statement's sequence number.
 */
export function registerReleaseRoutes(
  app: FastifyInstance,
  launcher: LauncherService,
  guard: (request: FastifyRequest) => Promise<Principal>,
): void {
  app.get('/launcher/realms/:realm/release', async (request, reply) => {
    const principal = await guard(request);
    const { realm } = realmParams.parse(request.params);
    const { sequence, envelope } = await launcher.releaseStatement(realm, principal);
    return reply.header('etag', `"release-${sequence}"`).type('application/json').send(envelope);
  });
}
