/** Published ports, as the rest of the driver sees them: the publisher, and the engine's port map parsed. */
export { describePublished, PortPublisher, readPublications, type EndpointPublications, type Published, type PublishTarget } from './port-publisher.js';
export { portRequests, type PortRequest } from './port-map.js';
export { parsePortRange } from './port-allocator.js';
