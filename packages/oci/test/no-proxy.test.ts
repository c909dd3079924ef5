import { NoProxyRules, proxySettingsFromEnvironment } from '@splintertree/oci';
import { describe, expect, it } from 'vitest';

describe('NO_PROXY as Go programs (docker, oras, skopeo) read it', () => {
  it('never proxies loopback, whatever NO_PROXY says', () => {
    const rules = new NoProxyRules(undefined);
    for (const origin of [
      'https://localhost:5000',
      'https://127.0.0.1',
      'https://127.9.9.9:443',
      'http://[::1]:5000',
      'https://a.localhost',
    ])
      expect(rules.bypasses(origin), origin).toBe(true);
    expect(rules.bypasses('https://registry.example.com')).toBe(false);
    expect(rules.bypasses('https://10.0.0.1')).toBe(false);
  });

  it('matches names with their subdomains, .names without, ports, IPs, CIDR ranges and *', () => {
    const rules = new NoProxyRules(
      'example.com, .internal,*.corp.test registry.lan:5000,10.1.2.3,192.168.0.0/16,fd00::/8',
    );
    const cases: Array<[string, boolean]> = [
      ['https://example.com', true],
      ['https://cdn.example.com', true],
      ['https://notexample.com', false],
      ['https://internal', false],
      ['https://a.internal', true],
      ['https://corp.test', false],
      ['https://x.corp.test', true],
      ['https://registry.lan:5000', true],
      ['https://registry.lan', false],
      ['https://10.1.2.3:8443', true],
      ['https://10.1.2.4', false],
      ['https://192.168.40.7', true],
      ['https://[fd00::5]', true],
      ['https://[fe80::1]', false],
    ];
    for (const [origin, bypass] of cases) expect(rules.bypasses(origin), origin).toBe(bypass);
    expect(new NoProxyRules('*').bypasses('https://anything.example')).toBe(true);
  });

  it('reads upper case first, takes lower case, and counts empty as unset', () => {
    expect(
      proxySettingsFromEnvironment({
        HTTPS_PROXY: 'http://a:3128',
        https_proxy: 'http://b:3128',
        http_proxy: 'c:8080',
        NO_PROXY: '',
        no_proxy: 'x',
      }),
    ).toEqual({ httpsProxy: 'http://a:3128', httpProxy: 'c:8080', noProxy: 'x' });
  });
});
