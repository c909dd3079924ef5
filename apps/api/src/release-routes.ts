import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { matchesIfNoneMatch } from './etag.js';
import type { LauncherService, Principal } from './launcher-service.js';

const realmParams = z.object({ realm: z.string() });

/**
 * `GET /launcher/realms/:realm/release`: the realm's newest signed release statement, a DSSE
 * envelope exactly as it was signed at activation, rollback or refresh. The launcher verifies it
 * against its own release keys, so this route asks for no trust in the API; its ETag is the
 * statement's sequence number, and a matching If-None-Match is answered 304 without a body.
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
    const etag = `"release-${sequence}"`;
    reply.header('etag', etag);
    if (matchesIfNoneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send();
    return reply.type('application/json').send(envelope);
  });
}
