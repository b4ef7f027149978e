import { Command } from 'commander';
import { Config } from '../config/schema';
import { writeFileAtomic } from '../data-dir/atomic-file';
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
 * registerDeviceCommandCommands adds `devices command <id> --retire --out <file>` (issue 13): a signed
 * command for the device's agent (`agent command --in <file>`), decided in ra/device-commands.ts.
 */
export function registerDeviceCommandCommands(program: Command, ctx: DeviceCommandCliContext): void {
  const devices = program.commands.find((c) => c.name() === 'devices') ?? program.command('devices');
  devices
    .command('command <id>')
    .description('a signed command for a retired device\'s agent ("agent command --in <file>"): it evicts its TPM objects and deletes its identity files')
    .requiredOption('--retire', 'the retire command (the device must be retired: devices retire <id>)')
    .requiredOption('--out <file>', 'the command (DER CMS), to hand to the device')
    .action(async (id: string, o: { out: string }) => {
      const cfg = ctx.config();
      const store = await ctx.openCheckedStore(cfg);
      const keys = openKeyBackend(cfg);
      try {
        const r = await new DeviceCommands(cfg, store, keys).issue({ deviceId: id, command: 'retire', actor: ctx.actor() });
        writeFileAtomic(o.out, r.der, 0o644);
        if (ctx.json()) console.log(JSON.stringify({ out: o.out, ...r.command }));
        else console.log(`retire command for ${id} (nonce ${r.command.nonce}, valid until ${r.command.expiresAt}): ${o.out}`);
      } finally {
        await store.close();
        await keys.close();
      }
    });
}
