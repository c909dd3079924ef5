import { type Command, Option } from 'commander';
import { loadSettings } from '../context.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the launcher API (realm chains, preload key unlock) until SIGTERM or SIGINT')
    .option('--port <port>', 'TCP port (default 8080; 0 picks a free one)')
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--rate-limit <n>', 'requests per second per launcher token, on average (default 50)')
    .option('--burst <n>', 'requests a token may make at once (default 100)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (default info)')
    .addOption(
      new Option(
        '--failure-rate <n>',
        'failed authentications per second per client address and per token id, on average (default 1)',
      ).env('SPLINTER_API_FAILURE_RATE'),
    )
    .addOption(
      new Option(
        '--failure-burst <n>',
        'failed authentications at once per address and per token id before 429 (default 20)',
      ).env('SPLINTER_API_FAILURE_BURST'),
    )
    .addOption(
      new Option(
        '--trust-proxy <value>',
        'take the client address from X-Forwarded-For when the peer is one of these comma-separated addresses, CIDR ranges, loopback, linklocal or uniquelocal; true trusts any peer (default false)',
      ).env('SPLINTER_API_TRUST_PROXY'),
    )
    .addOption(
      new Option(
        '--listen-heartbeat <ms>',
        'heartbeat interval of the LISTEN connection; one not back in time means not ready (default 3000)',
      ).env('SPLINTER_API_LISTEN_HEARTBEAT'),
    )
    .action(
      async (flags: {
        port?: string;
        host?: string;
        rateLimit?: string;
        burst?: string;
        logLevel?: string;
        failureRate?: string;
        failureBurst?: string;
        trustProxy?: string;
        listenHeartbeat?: string;
      }) => {
        const { serveUntilSignalled } = await import('@splinter/api');
        await serveUntilSignalled(loadSettings(), flags);
      },
    );
}
