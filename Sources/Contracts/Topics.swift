/// Where the events of the visit travel.
///
/// One topic for every producer, keyed by `receptionId`: all events of one visit, whoever
/// produced them, sit in one partition in the order they were published. Because a service
/// publishes an event only after it consumed the event that caused it, that order is causal,
/// so every consumer sees a visit's history in the order it happened.
public enum Topics {
    public static let visitEvents = "hospital.visit-events"
}
