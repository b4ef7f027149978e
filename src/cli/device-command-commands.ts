import { Command } from 'commander';
import { Config } from '../config/schema';
import { writeFileAtomic } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';
import { openKeyBackend } from '../keys/open-key-backend';
import { DeviceCommands } from '../ra/device-commands';
import { Store } from '../store/store';

/** DeviceCommandCliContext: what `devices command` takes from the main program. */
export interface DeviceCommandCliContext {
  config: () => Config;
  json: () => boolean;
  actor: () => string;
  openCheckedStore: (cfg: Config) => Promise<Store>;
}

/**
 * registerDeviceCommandCommands adds `devices command <id> --retire|--transfer --out <file>` (issue 13): a signed
 * command for the device's agent (`agent command --in <file>`), decided in ra/device-commands.ts.
 */
export function registerDeviceCommandCommands(program: Command, ctx: DeviceCommandCliContext): void {
  const devices = program.commands.find((c) => c.name() === 'devices') ?? program.command('devices');
  devices
    .command('command <id>')
    .description('a signed command for a device\'s agent ("agent command --in <file>"): retire evicts its TPM objects and deletes its identity files; transfer also enrolls again')
    .option('--retire', 'the retire command (the device must be retired: devices retire <id>)')
    .option('--transfer', 'the transfer command (the device must be released to its new owner: devices release <id> --to <owner>)')
    .requiredOption('--out <file>', 'the command (DER CMS), to hand to the device')
    .action(async (id: string, o: { out: string; retire?: boolean; transfer?: boolean }) => {
      if (!o.retire === !o.transfer) throw new DeviceCaError('bad-request', 'give one of --retire and --transfer');
      const command = o.retire ? 'retire' : 'transfer';
      const cfg = ctx.config();
      const store = await ctx.openCheckedStore(cfg);
      const keys = openKeyBackend(cfg);
      try {
        const r = await new DeviceCommands(cfg, store, keys).issue({ deviceId: id, command, actor: ctx.actor() });
        writeFileAtomic(o.out, r.der, 0o644);
        if (ctx.json()) console.log(JSON.stringify({ out: o.out, ...r.command }));
        else console.log(`${command} command for ${id} (nonce ${r.command.nonce}, valid until ${r.command.expiresAt}): ${o.out}`);
      } finally {
        await store.close();
        await keys.close();
      }
    });
}
