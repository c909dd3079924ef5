import { runTransferBench } from './transfer.js';

export default async function (): Promise<void> {
  await runTransferBench('pull');
}
