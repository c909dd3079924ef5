import { registryHostOf, settingsFromEnvironment } from '@splintertree/core';
import { isSplinterError } from '@splintertree/errors';
import { describe, expect, it } from 'vitest';

describe('registry access from the environment', () => {
  it('reads REGISTRY_AUTH_FILE, SPLINTER_CA_FILE, SPLINTER_INSECURE, SPLINTER_PLAIN_HTTP and proxies', () => {
    const settings = settingsFromEnvironment({
      REGISTRY_AUTH_FILE: '/run/containers/auth.json',
      SPLINTER_CA_FILE: '/etc/studio/ca.pem',
      SPLINTER_INSECURE: 'TRUE',
      SPLINTER_PLAIN_HTTP: '0',
      https_proxy: 'http://proxy:3128',
      NO_PROXY: '.studio.internal',
    });
    expect(settings).toMatchObject({
      registryAuthFile: '/run/containers/auth.json',
      caFile: '/etc/studio/ca.pem',
      insecure: true,
      plainHttp: false,
      proxy: { httpsProxy: 'http://proxy:3128', noProxy: '.studio.internal' },
    });
    expect(settingsFromEnvironment({})).toMatchObject({
      insecure: false,
      plainHttp: false,
      caFile: undefined,
    });
  });

  it('refuses a flag variable that is neither on nor off', () => {
    try {
      settingsFromEnvironment({ SPLINTER_INSECURE: 'maybe' });
      expect.unreachable();
    } catch (error) {
      expect(isSplinterError(error, 'INVALID_CONFIG')).toBe(true);
      expect((error as Error).message).toContain(
        'SPLINTER_INSECURE must be 1, true, yes, on, or 0, false, no, off',
      );
    }
  });

  it('takes https:// on a registry host and explains http://', () => {
    expect(registryHostOf('https://registry.example.com:5000/')).toBe('registry.example.com:5000');
    expect(registryHostOf('registry.example.com')).toBe('registry.example.com');
    // A fact without CLI flags; the reason lets an app add the way out (--plain-http in the CLI).
    expect(() => registryHostOf('http://127.0.0.1:5000')).toThrow(
      expect.objectContaining({
        code: 'INVALID_REFERENCE',
        message: expect.not.stringMatching(/--/),
        details: { reason: 'http-scheme' },
      }),
    );
    expect(() => registryHostOf('oci://127.0.0.1:5000')).toThrow(/oci:\/\/ is not a registry scheme/);
  });
});
