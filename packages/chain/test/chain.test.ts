import {
  HEAD_CHANGED_CHANNEL,
  type HeadChange,
  MIGRATIONS,
  migrate,
  REALM_VIEW_ANCESTORS,
} from '@splintertree/chain';
import { errorCodeOf } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, type BackendName, dumpTables, openBackend, patchInput } from './backends.js';

for (const backendName of ['postgres', 'pglite'] as BackendName[]) {
  describe(`cluster.patches on ${backendName}`, () => {
    let backend: Backend;
    beforeAll(async () => {
      backend = await openBackend(backendName, 'chain');
    });
    afterAll(async () => {
      await backend?.close();
    });

    it('migrates from empty once; running again applies nothing', async () => {
      expect(await migrate(backend.client)).toEqual({ applied: [] });
      const { rows } = await backend.client.query<{ version: number }>(
        'SELECT version FROM cluster.schema_migrations ORDER BY 1',
      );
      expect(rows.map((r) => Number(r.version))).toEqual(MIGRATIONS.map((m) => m.version));
    });

    it('registers a root, then children defaulting to the head, storing the full chain root first', async () => {
      const { chain } = backend;
      const root = await chain.registerPatch(patchInput('reg', '1.0'));
      expect(root).toMatchObject({ parent: null, chain: [root.id], depth: 0, status: 'draft' });
      await chain.activate({ patchId: root.id, actor: 'test' });
      const child = await chain.registerPatch(patchInput('reg', '1.1'));
      expect(child).toMatchObject({ parent: root.id, chain: [root.id, child.id], depth: 1 });
      const explicit = await chain.registerPatch(patchInput('reg', '1.1-hotfix', '1.0'));
      expect(explicit.parent).toBe(root.id);
      const grand = await chain.registerPatch(patchInput('reg', '1.2', child.id));
      expect(grand.chain).toEqual([root.id, child.id, grand.id]);
    });

    it('refuses a duplicate version, an unknown parent and a parent from another realm, changing nothing', async () => {
      const { chain, client } = backend;
      const other = await chain.registerPatch(patchInput('other-realm', '1'));
      await chain.registerPatch(patchInput('rules', '1'));
      const before = await dumpTables(client);
      expect(await errorCodeOf(chain.registerPatch(patchInput('rules', '1')))).toBe('PATCH_EXISTS');
      expect(await errorCodeOf(chain.registerPatch(patchInput('rules', '2', 'nope')))).toBe('PATCH_UNKNOWN');
      expect(await errorCodeOf(chain.registerPatch(patchInput('rules', '2', other.id)))).toBe(
        'REALM_MISMATCH',
      );
      expect(await dumpTables(client)).toBe(before);
    });

    it('activates forward, refuses a patch off the chain (unless forced, logged), rolls back in the log', async () => {
      const { chain, client } = backend;
      const a = await chain.registerPatch(patchInput('flow', 'a'));
      const first = await chain.activate({ patchId: a.id, actor: 'alice' });
      const b = await chain.registerPatch(patchInput('flow', 'b'));
      const c = await chain.registerPatch(patchInput('flow', 'c', 'b'));
      const sideline = await chain.registerPatch(patchInput('flow', 'side', a.id));
      const second = await chain.activate({ patchId: c.id, actor: 'alice', expectedHead: a.id });
      expect(second).toMatchObject({ action: 'activate', fromHead: a.id, toHead: c.id, forced: false });
      expect(BigInt(second.seq)).toBeGreaterThan(BigInt(first.seq));

      const before = await dumpTables(client);
      expect(await errorCodeOf(chain.activate({ patchId: sideline.id, actor: 'bob' }))).toBe('HEAD_CONFLICT');
      expect(await errorCodeOf(chain.activate({ patchId: b.id, actor: 'bob', expectedHead: a.id }))).toBe(
        'HEAD_CONFLICT',
      );
      expect(await errorCodeOf(chain.activate({ patchId: c.id, actor: 'bob' }))).toBe('HEAD_CONFLICT');
      expect(await errorCodeOf(chain.activate({ patchId: a.id, actor: 'bob', realm: 'reg' }))).toBe(
        'REALM_MISMATCH',
      );
      expect(await errorCodeOf(chain.rollback({ realm: 'flow', to: sideline.id, actor: 'bob' }))).toBe(
        'INVALID_TRANSITION',
      );
      expect(await dumpTables(client)).toBe(before);

      const back = await chain.rollback({ realm: 'flow', actor: 'carol' });
      expect(back).toMatchObject({ action: 'rollback', fromHead: c.id, toHead: b.id });
      expect((await chain.getPatch(c.id)).status).toBe('superseded');
      expect((await chain.getPatch(b.id)).status).toBe('active');
      const toRoot = await chain.rollback({ realm: 'flow', to: a.id, actor: 'carol' });
      expect(toRoot.toHead).toBe(a.id);
      expect(await chain.isInActiveChain(b.id)).toBe(false);
      expect(await errorCodeOf(chain.rollback({ realm: 'flow', actor: 'carol' }))).toBe('INVALID_TRANSITION');

      const forced = await chain.activate({ patchId: sideline.id, actor: 'dave', force: true });
      expect(forced.forced).toBe(false); // a is the head and sideline descends from it: nothing to force
      const offChain = await chain.activate({ patchId: c.id, actor: 'dave', force: true });
      expect(offChain.forced).toBe(true);
      const history = await chain.history('flow');
      expect(history.map((r) => r.action)).toEqual([
        'activate',
        'activate',
        'rollback',
        'rollback',
        'activate',
        'activate',
      ]);
      expect(history.map((r) => BigInt(r.seq))).toEqual(
        [...history.map((r) => BigInt(r.seq))].sort((x, y) => (x < y ? -1 : 1)),
      );
      const shown = await chain.showRealm('flow');
      expect(shown.head?.id).toBe(c.id);
      expect(shown.chain.map((p) => p.version)).toEqual(['a', 'b', 'c']);
    });

    it('bounds the realm view: the head, its nearest ancestors and a count of the rest, whatever the depth', async () => {
      const { chain } = backend;
      const realm = 'deep';
      let last = await chain.registerPatch(patchInput(realm, 'v0'));
      await chain.activate({ patchId: last.id, actor: 't' });
      const sizes = new Map<number, number>();
      for (let depth = 1; depth <= REALM_VIEW_ANCESTORS + 150; depth++) {
        last = await chain.registerPatch(patchInput(realm, `v${depth}`, last.id));
        if (depth === REALM_VIEW_ANCESTORS + 50 || depth === REALM_VIEW_ANCESTORS + 150) {
          await chain.activate({ patchId: last.id, actor: 't' });
          const shown = await chain.showRealm(realm);
          expect(shown.head).toMatchObject({ id: last.id, version: `v${depth}`, depth, status: 'active' });
          expect(shown.chain).toHaveLength(REALM_VIEW_ANCESTORS + 1);
          expect(shown.chain.map((p) => p.depth)).toEqual(
            Array.from({ length: REALM_VIEW_ANCESTORS + 1 }, (_, i) => depth - REALM_VIEW_ANCESTORS + i),
          );
          expect(shown.chain.at(-2)?.id).toBe(last.parent);
          expect(shown.omitted).toBe(depth - REALM_VIEW_ANCESTORS);
          expect(shown.chain.some((p) => 'chain' in p)).toBe(false);
          sizes.set(depth, JSON.stringify(shown).length);
        }
      }
      // 100 levels deeper, the view is the same size (give or take a timestamp and wider numbers)
      const [shallow, deep] = [...sizes.values()];
      expect(deep!).toBeLessThan(shallow! * 1.02);
      const tip = await chain.showRealm(realm, { ancestors: 0 });
      expect(tip).toMatchObject({ head: { id: last.id }, omitted: REALM_VIEW_ANCESTORS + 150 });
      expect(tip.chain.map((p) => p.id)).toEqual([last.id]);
      expect(await errorCodeOf(chain.showRealm(realm, { ancestors: -1 }))).toBe('INVALID_ARGUMENT');
      expect(await errorCodeOf(chain.showRealm('no-such-realm'))).toBe('REALM_UNKNOWN');
    });

    it('keeps the release log append-only in the database itself', async () => {
      expect(await errorCodeOf(backend.client.query("UPDATE cluster.releases SET actor = 'mallory'"))).toBe(
        'DATABASE_ERROR',
      );
      expect(await errorCodeOf(backend.client.query('DELETE FROM cluster.releases'))).toBe('DATABASE_ERROR');
    });

    it('makes the mods of the head the active mods, through activation and rollback', async () => {
      const { chain } = backend;
      const modA = { reference: 'mods/a@sha256:' + '1'.repeat(64), digest: `sha256:${'1'.repeat(64)}` };
      const modB = { reference: 'mods/b@sha256:' + '2'.repeat(64), digest: `sha256:${'2'.repeat(64)}` };
      const one = await chain.registerPatch({ ...patchInput('mods', '1'), mods: [modA] });
      await chain.activate({ patchId: one.id, actor: 't' });
      const two = await chain.registerPatch({ ...patchInput('mods', '2'), mods: [modA, modB] });
      await chain.activate({ patchId: two.id, actor: 't' });
      expect(await chain.activeMods('mods')).toEqual([modA, modB]);
      await chain.rollback({ realm: 'mods', actor: 't' });
      expect(await chain.activeMods('mods')).toEqual([modA]);
    });

    it('revokes a patch that is not the head, and never the head', async () => {
      const { chain } = backend;
      const one = await chain.registerPatch(patchInput('revoke', '1'));
      await chain.activate({ patchId: one.id, actor: 't' });
      const two = await chain.registerPatch(patchInput('revoke', '2'));
      expect(await errorCodeOf(chain.revokePatch(one.id))).toBe('INVALID_TRANSITION');
      expect((await chain.revokePatch(two.id)).status).toBe('revoked');
      expect(await errorCodeOf(chain.activate({ patchId: two.id, actor: 't' }))).toBe('INVALID_TRANSITION');
    });

    it(`announces every head change on ${HEAD_CHANGED_CHANNEL}`, async () => {
      const { chain } = backend;
      const seen: HeadChange[] = [];
      const stop = await chain.listenHeadChanges((change) => seen.push(change));
      const p = await chain.registerPatch(patchInput('notify', '1'));
      const release = await chain.activate({ patchId: p.id, actor: 't' });
      const deadline = Date.now() + 5000;
      while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await stop();
      expect(seen).toEqual([
        {
          realm: 'notify',
          seq: release.seq,
          action: 'activate',
          fromHead: null,
          toHead: p.id,
          forced: false,
        },
      ]);
    });

    it('matches a simple in-memory model over a long random walk of register/activate/rollback', async () => {
      const { chain } = backend;
      const steps = backendName === 'postgres' ? 2000 : 400;
      const realm = 'walk';
      type ModelPatch = { id: string; parent: string | null; chain: string[]; status: string };
      const model = { head: null as string | null, patches: new Map<string, ModelPatch>(), releases: 0 };
      let seed = 12345;
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      for (let step = 0; step < steps; step++) {
        const ids = [...model.patches.keys()];
        const choice = random(10);
        if (choice < 3 || ids.length === 0) {
          const parentId = ids.length === 0 || random(4) === 0 ? undefined : ids[random(ids.length)];
          const row = await chain.registerPatch(patchInput(realm, `v${step}`, parentId));
          const parent = parentId ?? model.head;
          const parentChain = parent ? model.patches.get(parent)!.chain : [];
          model.patches.set(row.id, { id: row.id, parent, chain: [...parentChain, row.id], status: 'draft' });
          expect(row.chain).toEqual([...parentChain, row.id]);
        } else if (choice < 7) {
          const target = model.patches.get(ids[random(ids.length)]!)!;
          const allowed =
            target.id !== model.head && (model.head === null || target.chain.includes(model.head));
          const result = await chain.activate({ patchId: target.id, actor: 'walker' }).then(
            () => 'ok',
            (e: { code: string }) => e.code,
          );
          expect(result, `step ${step}: activate ${target.id} over ${model.head}`).toBe(
            allowed ? 'ok' : 'HEAD_CONFLICT',
          );
          if (allowed) {
            if (model.head) model.patches.get(model.head)!.status = 'superseded';
            target.status = 'active';
            model.head = target.id;
            model.releases += 1;
          }
        } else {
          const head = model.head ? model.patches.get(model.head)! : undefined;
          const useTo = random(2) === 0 && head !== undefined && head.chain.length > 1;
          const to = useTo ? head!.chain[random(head!.chain.length - 1)] : undefined;
          const destination = to ?? head?.parent ?? null;
          const result = await chain.rollback({ realm, to, actor: 'walker' }).then(
            () => 'ok',
            (e: { code: string }) => e.code,
          );
          const allowed = head !== undefined && destination !== null;
          expect(result, `step ${step}: rollback to ${destination}`).toBe(
            allowed ? 'ok' : 'INVALID_TRANSITION',
          );
          if (allowed) {
            head!.status = 'superseded';
            model.patches.get(destination!)!.status = 'active';
            model.head = destination;
            model.releases += 1;
          }
        }
        if (step % 50 === 0 || step === steps - 1) {
          const rows = await chain.listPatches(realm);
          expect(Object.fromEntries(rows.map((r) => [r.id, r.status]))).toEqual(
            Object.fromEntries([...model.patches.values()].map((p) => [p.id, p.status])),
          );
          const shown = await chain.showRealm(realm, { ancestors: 5 });
          const headChain = model.head ? model.patches.get(model.head)!.chain : [];
          expect(shown.head?.id ?? null).toBe(model.head);
          expect(shown.chain.map((p) => p.id)).toEqual(headChain.slice(-6));
          expect(shown.omitted).toBe(Math.max(0, headChain.length - 6));
          expect((await chain.history(realm)).length).toBe(model.releases);
        }
      }
    }, 240_000);
  });
}
