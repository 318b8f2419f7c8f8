/**
 * libnetwork's remote NetworkDriver, method by method, on OVN: networks are
 * logical switches, endpoints logical switch ports, Join plugs a veth into
 * the integration bridge and waits for OVN to report the port up.
 *
 * Every method is idempotent (the engine retries) and serialized per
 * network/endpoint id; the truth lives in OVN NB and OVS, nothing here.
 */
import type { Logger } from 'pino';
import { type EndpointRecord, type EndpointSpec, type NetworkRecord, type NetworkSpec, type OvnNetworks } from '../ovn/networks.js';
import { ADDRESS_SPACE, type OvnPools } from '../ovn/pools.js';
import type {
  DockerOptions,
  AllocateNetworkRequest,
  CreateEndpointRequest,
  CreateNetworkRequest,
  EndpointRequest,
  GwAllocCheckRequest,
  JoinRequest,
  NetworkRequest,
  ProgramRequest,
} from '../protocol/network-driver.js';
import { DriverError, toDriverError } from './errors.js';
import { DomainError } from '../errors.js';
import { stripPrefix } from '../net/addressing.js';
import { describePublished, portRequests, type PortPublisher } from '../publish/index.js';
import type { HostPorts } from '../host/host-ports.js';
import { HostGateways } from '../host/host-gateways.js';
import { hostIfName, peerIfName } from '../host/names.js';
import type { PortReadiness } from '../ovn/port-readiness.js';
import { KeyedLock } from './keyed-lock.js';
import { GATEWAY_OPTION, gatewaySkips, genericOptions, toEndpointSpec, toNetworkSpec } from './translate.js';
import type { WarmPorts } from '../warm/index.js';

const PORT_MAP_OPTION = 'com.docker.network.portmap';

/** How long a finished Leave teardown is remembered, so that the DeleteEndpoint right after it can skip its own. */
const UNPLUG_MEMORY_MS = 60_000;

export interface DriverSettings {
  scope: 'local' | 'global';
  /** MTU of networks that do not set com.docker.network.driver.mtu. */
  mtu: number;
  /** How long Join waits for OVN to report the port up; 0 does not wait. */
  portUpTimeoutMs: number;
  /** OVS system-id of this host, if known. */
  chassis: string | undefined;
  /** Egress of networks created without -o ovn.gateway. */
  gateway: 'host' | 'docker';
  /** Nested mode: the VM's own port, parent of every endpoint's port (ovn/vlan-tags.ts). */
  parent?: string;
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes?: { Destination: string; RouteType: number; NextHop?: string }[];
  DisableGatewayService?: boolean;
}

/** Swarm's network ids (swarmkit's identity.NewID: 25 base-36 characters); the engine's own are 64 hex. */
const SWARM_NETWORK_ID = /^[0-9a-z]{25}$/;

export class NetworkDriver {
  private readonly locks = new KeyedLock();
  /**
   * Host-side teardown started by Leave, running after Leave has answered:
   * deleting a veth takes the kernel tens of milliseconds, and nothing the
   * engine does next depends on it. DeleteEndpoint then need not repeat it.
   * Only a shortcut: after a restart the map is empty, DeleteEndpoint unplugs
   * in full, and reconcile() removes whatever a crash interrupted.
   */
  private readonly unplugs = new Map<string, Promise<void>>();

  constructor(
    private readonly networks: OvnNetworks,
    private readonly pools: OvnPools,
    private readonly host: HostPorts,
    private readonly gateways: HostGateways,
    private readonly readiness: PortReadiness,
    private readonly settings: DriverSettings,
    private readonly log: Logger,
    /** Ports kept ready ahead of containers (src/warm). */
    private readonly warm: WarmPorts,
    /** Ports this host publishes for its containers (src/publish); undefined when the firewall is not ours (--masquerade false). */
    private readonly publisher?: PortPublisher,
  ) {}

  getCapabilities() {
    // GwAllocChecker: engines 28+ then ask gwAllocCheck before reserving a network's gateway address (older ones ignore it).
    return { Scope: this.settings.scope, ConnectivityScope: 'global', GwAllocChecker: true };
  }

  /** Engine 28+, before IPAM: which families need no gateway address, an --internal network's (translate.ts). */
  gwAllocCheck(req: GwAllocCheckRequest): { SkipIPv4: boolean; SkipIPv6: boolean } {
    return gatewaySkips(req.Options, { mtu: this.settings.mtu, gateway: this.settings.gateway });
  }

  async createNetwork(req: CreateNetworkRequest): Promise<object> {
    if (this.settings.scope === 'local' && SWARM_NETWORK_ID.test(req.NetworkID)) {
      // A node-local driver's swarm network reaches each node without its --subnet and IPAM
      // driver: every node would give the one switch a default pool of its own (docs/swarm.md).
      throw new DriverError(
        'a swarm network needs this plugin at global scope: docker plugin disable NAME && docker plugin set NAME ' +
          'OVN_DOCKER_SCOPE=global && docker plugin enable NAME, on every node, then create the network again (docs/swarm.md)',
        400,
      );
    }
    const spec = toNetworkSpec(req, { mtu: this.settings.mtu, gateway: this.settings.gateway });
    if (this.settings.parent && HostGateways.wanted(spec)) {
      throw new DriverError(
        `-o ${GATEWAY_OPTION}=host is not available in nested mode: this VM is not an OVN chassis and cannot be the network's gateway; ` +
          `its containers reach out through Docker's docker_gwbridge (leave the option out, or -o ${GATEWAY_OPTION}=docker)`,
        400,
      );
    }
    if (this.settings.chassis) spec.chassis = this.settings.chassis;
    await this.checkHostRoutes(spec, genericOptions(req.Options)[GATEWAY_OPTION] === undefined);
    // Subnets from our IPAM are cluster-wide pools: the network joins the pool's switch.
    const ours = (data: CreateNetworkRequest['IPv4Data']) => (data ?? []).some((d) => d.AddressSpace === ADDRESS_SPACE);
    const pool = (subnets: { subnet: string }[]) => (subnets[0] ? this.pools.poolOf(subnets[0].subnet) : undefined);
    const v4 = ours(req.IPv4Data) ? pool(spec.ipv4) : undefined;
    const v6 = ours(req.IPv6Data) ? pool(spec.ipv6) : undefined;
    if (v4 || v6) spec.pools = { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
    return this.locks.run(`net:${spec.networkId}`, async () => {
      const record = await this.ovn(() => this.networks.ensureNetwork(spec), `create network ${spec.networkId}`);
      if (spec.pools) {
        for (const s of [...spec.ipv4, ...spec.ipv6]) {
          await this.ovn(() => this.pools.markNetworkCreated(s.subnet, this.settings.chassis ?? '', spec.networkId), 'update pool');
        }
      }
      if (HostGateways.wanted(record)) {
        await this.hostStep(() => this.gateways.ensure(record), `set up this host as the gateway of network ${spec.networkId}`);
      }
      this.warm.networkCreated();
      this.log.info(
        { networkId: spec.networkId, switch: record.uuid, ipv4: spec.ipv4, ipv6: spec.ipv6, mtu: spec.mtu },
        'network created',
      );
      return {};
    });
  }

  /**
   * A subnet this host already routes elsewhere (its LAN, say) cannot have
   * the host as its gateway: the gateway's route would shadow the other. By
   * default such a network gets Docker's docker_gwbridge instead, as with
   * Docker's overlay driver; asked for explicitly, it is refused.
   */
  private async checkHostRoutes(spec: NetworkSpec, defaulted: boolean): Promise<void> {
    if (!HostGateways.wanted(spec)) return;
    const route = await this.hostStep(() => this.gateways.conflictingRoute(spec), "read this host's routes");
    if (!route) return;
    const subnet = spec.ipv4.find((s) => s.gateway)!.subnet;
    const where = `${route.dst}${route.dev ? ` (dev ${route.dev})` : ''}`;
    if (!defaulted) {
      throw new DriverError(
        `subnet ${subnet} overlaps this host's route to ${where}: this host cannot be its gateway; ` +
          `choose another --subnet, or -o ${GATEWAY_OPTION}=docker`,
        409,
      );
    }
    spec.options[GATEWAY_OPTION] = 'docker';
    this.log.warn({ networkId: spec.networkId, subnet, route: where }, "the subnet overlaps a route of this host: the network uses Docker's docker_gwbridge instead of this host as its gateway");
  }

  async deleteNetwork(req: NetworkRequest): Promise<object> {
    return this.locks.run(`net:${req.NetworkID}`, async () => {
      const record = this.networks.findNetwork(req.NetworkID);
      if (record && HostGateways.wanted(record)) {
        await this.hostStep(() => this.gateways.remove(record), `remove this host's gateway of network ${req.NetworkID}`);
      }
      if (record && !this.otherLocalNetworkOn(record.uuid, req.NetworkID)) await this.warm.lastNetworkLeaving(record);
      const deleted = await this.ovn(() => this.networks.deleteNetwork(req.NetworkID), `delete network ${req.NetworkID}`);
      this.log.info({ networkId: req.NetworkID, deleted }, deleted ? 'network deleted' : 'network was already gone');
      // The switch took its ports with it: any veth of one that the steps above missed goes now, not at the next start.
      void this.reconcile().catch((err: unknown) => this.log.warn({ err }, 'cannot reconcile host ports after a network was deleted; the next start will'));
      return {};
    });
  }

  async createEndpoint(req: CreateEndpointRequest): Promise<object> {
    const network = this.networks.findNetwork(req.NetworkID);
    if (!network) throw new DriverError(`network ${req.NetworkID} does not exist in OVN (was it removed behind Docker's back?)`, 404);
    const spec = toEndpointSpec(req, network, this.settings.chassis);
    if (this.settings.parent) spec.parent = this.settings.parent;
    return this.locks.run(`ep:${spec.endpointId}`, async () => {
      // A retried CreateEndpoint finds the port it made (ensureEndpoint is idempotent); a new one may get a warm port.
      const { endpoint, warm } = this.networks.findEndpoint(spec.endpointId)
        ? { endpoint: await this.createPort(spec), warm: false }
        : await this.warm.endpointPort(network, spec, () => this.createPort(spec));
      this.log.info({ endpointId: spec.endpointId, port: endpoint.name, mac: endpoint.mac, ipv4: spec.ipv4, ipv6: spec.ipv6, warm }, 'endpoint created');
      // Only fields Docker left empty may be returned, or the engine rolls the endpoint back.
      return req.Interface?.MacAddress ? {} : { Interface: { MacAddress: endpoint.mac } };
    });
  }

  async deleteEndpoint(req: EndpointRequest): Promise<object> {
    const endpointId = req.EndpointID.toLowerCase();
    // What a failed start never revoked goes with the endpoint.
    if (this.publisher?.published(endpointId).length) await this.revokeExternalConnectivity(req);
    const deletePort = async () => {
      const deleted = await this.ovn(() => this.networks.deleteEndpoint(endpointId), `delete endpoint ${endpointId}`);
      this.log.info({ endpointId, deleted }, deleted ? 'endpoint deleted' : 'endpoint was already gone');
      return {};
    };
    // Leave's teardown holds the endpoint's lock; the NB delete need not wait for it.
    if (this.unplugs.has(endpointId)) return deletePort();
    return this.locks.run(`ep:${endpointId}`, async () => {
      const endpoint = this.networks.findEndpoint(endpointId);
      const network = endpoint && this.networks.findNetwork(endpoint.networkId);
      if (endpoint && network && this.warm.mayRecycle(endpoint, network)) {
        if (await this.warm.recycle(endpoint, network)) {
          this.log.info({ endpointId, port: endpoint.name }, 'endpoint deleted; its port is kept warm for the next container');
          return {};
        }
        // Leave left the veth for recycling, which did not happen: tear it down as Leave would have.
        const reply = await deletePort();
        this.unplugInBackground(endpointId, endpoint.name);
        return reply;
      }
      await this.hostStep(() => this.host.unplug(this.portNameOf(endpointId)), `unplug endpoint ${endpointId}`);
      return deletePort();
    });
  }

  endpointOperInfo(req: EndpointRequest): object {
    const endpointId = req.EndpointID.toLowerCase();
    const endpoint = this.networks.findEndpoint(endpointId);
    if (!endpoint) return { Value: {} };
    const published = this.publisher?.published(endpointId) ?? [];
    return {
      Value: {
        'ovn.logical_switch_port': endpoint.name,
        'ovn.mac': endpoint.mac,
        'ovn.up': endpoint.up,
        // The engine shows no remote driver's ports in `docker port`: here is where to read them.
        ...(published.length ? { 'ovn.published': published.map(describePublished) } : {}),
      },
    };
  }

  /**
   * The engine made this endpoint the container's gateway: publish the ports
   * it asks for (all of them, replacing what it published before). Only for
   * networks whose gateway is this host; any other answers {} and the engine
   * goes on without (such a network gives no gateway in Join).
   */
  async programExternalConnectivity(req: ProgramRequest): Promise<object> {
    const endpointId = req.EndpointID.toLowerCase();
    const requests = portRequests(req.Options);
    return this.locks.run(`ep:${endpointId}`, async () => {
      const endpoint = this.networks.findEndpoint(endpointId);
      if (!endpoint) throw new DriverError(`endpoint ${endpointId} does not exist in OVN; CreateEndpoint must come first`, 404);
      const network = this.networks.findNetwork(endpoint.networkId);
      const v4 = network?.ipv4.find((s) => s.gateway);
      if (!this.publisher || !network || !HostGateways.wanted(network) || !v4 || !endpoint.ipv4) {
        if (requests.length) this.log.warn({ endpointId, networkId: endpoint.networkId }, 'asked to publish ports on a network whose gateway is not this host: nothing published');
        return {};
      }
      const target = {
        endpointId,
        portName: endpoint.name,
        networkId: network.networkId,
        containerIp: stripPrefix(endpoint.ipv4),
        ifName: HostGateways.interfaceName(network.networkId),
        subnet: v4.subnet,
      };
      const publisher = this.publisher;
      await this.publishStep(() => publisher.program(target, requests), `publish the ports of endpoint ${endpointId}`);
      return {};
    });
  }

  /** The endpoint is no longer the container's gateway: its ports go. Unknown or already revoked endpoints answer {}. */
  async revokeExternalConnectivity(req: EndpointRequest): Promise<object> {
    const endpointId = req.EndpointID.toLowerCase();
    const publisher = this.publisher;
    if (!publisher) return {};
    await this.locks.run(`ep:${endpointId}`, () => this.publishStep(() => publisher.revoke(endpointId), `stop publishing the ports of endpoint ${endpointId}`));
    return {};
  }

  async join(req: JoinRequest): Promise<JoinResponse> {
    const endpointId = req.EndpointID.toLowerCase();
    return this.locks.run(`ep:${endpointId}`, async () => {
      const endpoint = this.networks.findEndpoint(endpointId);
      if (!endpoint) throw new DriverError(`endpoint ${endpointId} does not exist in OVN; CreateEndpoint must come first`, 404);
      const network = this.networks.findNetwork(endpoint.networkId);
      if (!network) throw new DriverError(`network ${endpoint.networkId} of endpoint ${endpointId} does not exist in OVN`, 404);
      const started = Date.now();
      // The lock orders this after any teardown a Leave started; a re-plugged endpoint needs a full teardown again.
      this.unplugs.delete(endpointId);
      if (this.warm.takeReady(endpoint.name)) {
        // A warm port: plugged and bound before Docker asked.
        const response = await this.joinResponse(network, peerIfName(endpoint.name), req.Options);
        this.log.info({ endpointId, srcName: response.InterfaceName.SrcName, gateway: response.Gateway ?? 'docker', ready: 'warm' }, 'endpoint joined');
        return response;
      }
      const srcName = await this.hostStep(
        () =>
          this.host.plug({
            endpointId,
            networkId: network.networkId,
            portName: endpoint.name,
            mac: endpoint.mac,
            mtu: network.mtu,
            ...(endpoint.tag !== undefined ? { tag: endpoint.tag } : {}),
          }),
        `plug endpoint ${endpointId} into the bridge`,
      );
      const plugged = Date.now();
      let ready = 'not waited for';
      if (this.settings.portUpTimeoutMs > 0) {
        try {
          ready = await this.readiness.wait(endpoint.name, hostIfName(endpoint.name), this.settings.portUpTimeoutMs);
        } catch (err) {
          // Leave nothing behind for a Join that failed.
          await this.host.unplug(endpoint.name).catch((e: unknown) =>
            this.log.warn({ endpointId, err: e }, 'cannot undo the plug of a failed Join; reconcile will'),
          );
          throw new DriverError(
            `OVN did not report port ${endpoint.name} up within ${this.settings.portUpTimeoutMs} ms: ` +
              `check that ovn-controller runs on this host and reaches the southbound database ` +
              `(ovs-vsctl get Open_vSwitch . external_ids:ovn-remote), then retry (${(err as Error).message})`,
            503,
            { cause: err },
          );
        }
      }
      const response = await this.joinResponse(network, srcName, req.Options);
      this.log.info(
        { endpointId, srcName, gateway: response.Gateway ?? 'docker', plugMs: plugged - started, upMs: Date.now() - plugged, ready },
        'endpoint joined',
      );
      return response;
    });
  }

  private async joinResponse(network: NetworkRecord, srcName: string, sandboxOptions: DockerOptions): Promise<JoinResponse> {
    const response: JoinResponse = { InterfaceName: { SrcName: srcName, DstPrefix: 'eth' } };
    // The engine publishes ports (-p, -P) only through a container's gateway endpoint: this host publishes
    // them when the firewall is the driver's (src/publish); otherwise docker_gwbridge is the gateway, and does.
    // Ports are published over IPv4: an IPv6-only network's container that publishes some takes docker_gwbridge.
    const publishable = this.publisher !== undefined && network.ipv4.some((s) => s.gateway);
    if (HostGateways.wanted(network) && (publishable || !publishesPorts(sandboxOptions))) {
      // After a driver restart the gateway may need setting up again (it is idempotent).
      await this.hostStep(() => this.gateways.ensure(network), `set up this host as the gateway of network ${network.networkId}`);
      const gateway = this.gateways.ipv4Gateway(network);
      const gateway6 = this.gateways.ipv6Gateway(network.networkId);
      if (gateway) response.Gateway = gateway;
      if (gateway6) response.GatewayIPv6 = gateway6;
      // An IPv6-only network on a host that does not forward IPv6 has no way out here: Docker's bridge gives one.
      if (gateway || gateway6) response.DisableGatewayService = true;
    }
    return response;
  }

  /** CreateEndpoint's own port, when no warm port serves it. */
  private async createPort(spec: EndpointSpec): Promise<EndpointRecord> {
    const { endpoint, replaced } = await this.ovn(() => this.networks.ensureEndpoint(spec), `create endpoint ${spec.endpointId}`);
    for (const port of replaced) {
      // A leftover holding this endpoint's address went with its port; its veth goes now, not at the next sweep.
      this.log.warn({ endpointId: spec.endpointId, port, ipv4: spec.ipv4 }, 'replaced a leftover port at the address Docker gave this endpoint');
      void this.host.unplug(port).catch((err: unknown) => this.log.warn({ port, err }, 'cannot remove the veth of a replaced port; the next sweep will'));
    }
    return endpoint;
  }

  /** The OVN port (and so veth) name of an endpoint: its id, or a warm port's name it adopted. */
  private portNameOf(endpointId: string): string {
    return this.networks.findEndpoint(endpointId)?.name ?? endpointId;
  }

  /** Whether another network of this host is attached to the switch. */
  private otherLocalNetworkOn(switchUuid: string, networkId: string): boolean {
    return this.networks
      .localNetworkIds(this.settings.chassis ?? '')
      .some((id) => id !== networkId && this.networks.findNetwork(id)?.uuid === switchUuid);
  }

  leave(req: EndpointRequest): object {
    const endpointId = req.EndpointID.toLowerCase();
    // Revoke comes first from the engine, except after a failed start: published ports never outlive Leave.
    this.revokeInBackground(endpointId);
    const endpoint = this.networks.findEndpoint(endpointId);
    const network = endpoint && this.networks.findNetwork(endpoint.networkId);
    if (endpoint && network && this.warm.mayRecycle(endpoint, network)) {
      // The engine moves the veth back out after Leave; DeleteEndpoint may then keep it for the next container.
      return {};
    }
    this.unplugInBackground(endpointId);
    return {};
  }

  /**
   * Start the host-side teardown of an endpoint without waiting for it:
   * deleting a veth takes the kernel tens of milliseconds, and nothing the
   * engine does next depends on it. `portName` when the port may be gone
   * from OVN by the time the endpoint's lock is free.
   */
  private unplugInBackground(endpointId: string, portName?: string): void {
    if (this.unplugs.has(endpointId)) return;
    const forget = () => {
      if (this.unplugs.get(endpointId) === unplug) this.unplugs.delete(endpointId);
    };
    const unplug: Promise<void> = this.locks.run(`ep:${endpointId}`, () => this.host.unplug(portName ?? this.portNameOf(endpointId))).then(
      () => {
        this.log.info({ endpointId }, 'host side of the endpoint removed');
        setTimeout(forget, UNPLUG_MEMORY_MS).unref();
      },
      (err: unknown) => {
        // Forget it now, so that DeleteEndpoint tries again.
        forget();
        this.log.error({ endpointId, err }, 'cannot remove the host side of an endpoint; DeleteEndpoint will retry, and reconcile at the next start');
      },
    );
    this.unplugs.set(endpointId, unplug);
  }

  private revokeInBackground(endpointId: string): void {
    if (!this.publisher?.published(endpointId).length) return;
    void this.revokeExternalConnectivity({ NetworkID: '', EndpointID: endpointId }).catch((err: unknown) =>
      this.log.error({ endpointId, err }, 'cannot stop publishing the ports of a leaving endpoint; DeleteEndpoint tries again'),
    );
  }

  /** Wait for host-side teardown still running after Leave (on shutdown). */
  async drain(): Promise<void> {
    await Promise.all(this.unplugs.values());
  }

  /** Swarm managers only (global scope): echo the options so workers get them in CreateNetwork. */
  allocateNetwork(req: AllocateNetworkRequest): object {
    return { Options: req.Options ?? {} };
  }

  /**
   * Remove what a crash left on this host: bridge ports and veths whose
   * endpoint is gone from OVN, gateway ports whose network is. At start-up
   * (`restoreGateways`), set up the gateways of this host's networks again.
   */
  async reconcile(restoreGateways = false) {
    const live = () =>
      new Set([
        ...this.networks
          .listEndpoints()
          .filter((e) => !this.settings.chassis || e.chassis === undefined || e.chassis === this.settings.chassis)
          .map((e) => e.name),
        ...this.warm.portNames(),
      ]);
    const local = this.networks
      .localNetworkIds(this.settings.chassis ?? '')
      .map((id) => this.networks.findNetwork(id))
      .filter((n): n is NetworkRecord => n !== undefined);
    // An NB without any network of this host is no evidence that its ports are gone (an empty or wrong NB).
    const hostKnown = local.length > 0;
    const gateways = restoreGateways ? await this.gateways.restore(local) : 0;
    const gatewaysRemoved = await this.gateways.sweep(local, hostKnown);
    const evidence = () => ({ hasNetwork: (id: string) => this.networks.findNetwork(id) !== undefined, hostKnown });
    const result = { ...(await this.host.reconcile(live, evidence)), gateways, gatewaysRemoved };
    this.log.info(result, 'reconciled host ports with OVN');
    return result;
  }

  private async ovn<T>(work: () => Promise<T>, what: string): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw toDriverError(err, (message) => `cannot ${what} in the OVN northbound database: ${message}`);
    }
  }

  /** A refusal of the publisher (a port in use) reaches the user as it is, in Docker's own words. */
  private async publishStep<T>(work: () => Promise<T>, what: string): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof DomainError) throw toDriverError(err, (message) => message);
      throw new DriverError(`cannot ${what}: ${(err as Error).message}`, 500, { cause: err });
    }
  }

  private async hostStep<T>(work: () => Promise<T>, what: string): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw new DriverError(`cannot ${what}: ${(err as Error).message}`, 500, { cause: err });
    }
  }
}

/** Whether the container publishes ports: Join's sandbox options carry its port bindings (an empty list when none). */
export function publishesPorts(sandboxOptions: DockerOptions): boolean {
  const bindings = sandboxOptions?.[PORT_MAP_OPTION];
  return Array.isArray(bindings) && bindings.length > 0;
}
