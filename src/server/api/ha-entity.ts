/** What mpota publishes for Home Assistant's MQTT `update` entity of each device. */

/** The discovery config of one device's `update` entity (Home Assistant's MQTT update schema). */
export interface HaUpdateConfig {
  name: string;
  unique_id: string;
  /** "firmware" for the firmware entity; left out for the app entity (Home Assistant has no class for it). */
  device_class?: "firmware";
  entity_category: "config";
  state_topic: string;
  command_topic: string;
  payload_install: string;
  availability: Array<{
    topic: string;
    value_template: string;
    payload_available: string;
    payload_not_available: string;
  }>;
  device: { identifiers: string[]; name: string; manufacturer: string; model: string; sw_version?: string };
  origin: { name: string; sw_version: string };
}

/**
 * A state message: only keys of Home Assistant's JSON update schema
 * (`MQTT_JSON_UPDATE_SCHEMA`: strings never null, `release_url` an http(s)
 * URL, `update_percentage` 0-100 or null), since one bad key makes it drop
 * the whole message. Optional keys are left out, never sent as null.
 */
export interface HaUpdateState {
  installed_version: string;
  latest_version: string;
  title: string;
  release_summary?: string;
  release_url?: string;
  /**
   * True from the moment a job exists until it ends, also while it waits for
   * a sleeping device to wake (Home Assistant has no "scheduled" state; the
   * entity shows an install in progress without a percentage, and its
   * install button stays off so the job is not asked for twice).
   */
  in_progress: boolean;
  /** 0-100 once the device is in OTA mode (pushing, verifying); null while the job waits and when there is none. */
  update_percentage: number | null;
}
