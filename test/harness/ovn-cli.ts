/** The OVS/OVN command-line tools, pointed at a private database, for test setup and assertions only. */
import { run } from './process.js';

export type CliTool = 'ovs-vsctl' | 'ovn-nbctl' | 'ovn-sbctl';

/** Run `tool --db=DB --timeout=S ARGS…` and return its stdout. */
export async function ovnCli(tool: CliTool, db: string, env: NodeJS.ProcessEnv, args: readonly string[]): Promise<string> {
  const timeout = tool === 'ovs-vsctl' ? 10 : 20;
  return (await run(tool, [`--db=${db}`, `--timeout=${timeout}`, ...args], { env })).stdout;
}
