import { DATABASE_TIMEOUT_VARIABLES, settingsFromEnvironment } from '@splintertree/core';
import { isSplinterError } from '@splintertree/errors';
import { describe, expect, it } from 'vitest';

describe('database timeouts from the environment', () => {
  it('defaults to 10 s to connect, 30 s a statement, 60 s idle in a transaction', () => {
    expect(settingsFromEnvironment({}).databaseTimeouts).toEqual({
      connectMs: 10_000,
      statementMs: 30_000,
      idleInTransactionMs: 60_000,
    });
  });

  it('reads each from its variable, 0 meaning no limit', () => {
    const settings = settingsFromEnvironment({
      SPLINTER_DB_CONNECT_TIMEOUT_MS: '2500',
      SPLINTER_DB_STATEMENT_TIMEOUT_MS: '0',
      SPLINTER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '120000',
    });
    expect(settings.databaseTimeouts).toEqual({
      connectMs: 2500,
      statementMs: 0,
      idleInTransactionMs: 120_000,
    });
  });

  it.each(['-1', '1.5', '10s', '2147483648'])('refuses %j as INVALID_CONFIG naming the variable', (value) => {
    for (const variable of Object.values(DATABASE_TIMEOUT_VARIABLES)) {
      let failure: unknown;
      try {
        settingsFromEnvironment({ [variable]: value });
      } catch (error) {
        failure = error;
      }
      expect(isSplinterError(failure) && failure.code).toBe('INVALID_CONFIG');
      expect((failure as Error).message).toContain(variable);
    }
  });
});

describe('database pool size and application_name from the environment', () => {
  it('defaults to 10 connections named splinter', () => {
    const settings = settingsFromEnvironment({});
    expect(settings.databasePoolSize).toBe(10);
    expect(settings.databaseApplicationName).toBe('splinter');
  });

  it('reads SPLINTER_DB_POOL_SIZE and SPLINTER_DB_APPLICATION_NAME', () => {
    const settings = settingsFromEnvironment({
      SPLINTER_DB_POOL_SIZE: '40',
      SPLINTER_DB_APPLICATION_NAME: 'splinter-api eu',
    });
    expect(settings.databasePoolSize).toBe(40);
    expect(settings.databaseApplicationName).toBe('splinter-api eu');
  });
});
